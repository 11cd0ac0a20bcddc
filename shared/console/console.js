// Berth's web console: a client of the management API (/api/v1, described by
// /api/v1/openapi.json) and nothing else. No framework and no build step: every element is made
// with document.createElement and every registry-controlled string goes in as text, never as
// HTML, so an image name such as `<script>` shows as what it is. The session is a short-lived
// management token kept in sessionStorage (gone when the tab closes); the secret key is never
// stored and nothing goes into a URL, a cookie or local storage.
'use strict';

const SESSION_KEY = 'berth.session';
const PAGE_SIZE = 50;
const MANAGER_ROLES = ['project-admin', 'project-member', 'service-admin'];
const POLL_MS = 2000;

// ---------------------------------------------------------------- elements (text only) ------

const LISTENERS = ['onclick'];

/** Makes an element: attrs sets properties/attributes (`on*` adds listeners), children are
 * nodes or strings (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (LISTENERS.includes(k)) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'required' || k === 'readOnly') el[k] = Boolean(v);
    else if (k === 'value') el.value = v;
    else if (/^on/i.test(k)) throw new Error(`no handler attribute ${k}`);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Appends children (nodes, strings, nested lists; null and false are skipped) to `el`. */
function put(el, ...children) { return append(el, children); }

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

// ---------------------------------------------------------------- formatting ----------------

/** 1,536 -> "1.5 KiB". */
function humanSize(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return '–';
  let v = Number(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function toDate(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return new Date(t > 1e12 ? t : t * 1000);
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A time as "3 min ago", with the exact UTC time in a <time> element's title. */
function humanTime(t) {
  const d = toDate(t);
  if (!d) return h('span', { class: 'muted', text: 'never' });
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  const abs = Math.abs(s);
  let text;
  if (abs < 45) text = 'just now';
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.round(abs / 3600)} h`;
  else if (abs < 86400 * 60) text = `${Math.round(abs / 86400)} days`;
  else text = d.toISOString().slice(0, 10);
  if (abs >= 45 && abs < 86400 * 60) text = s >= 0 ? `${text} ago` : `in ${text}`;
  return h('time', { datetime: d.toISOString(), title: d.toISOString().replace('.000', ''), text });
}

function shortDigest(d) { return typeof d === 'string' && d.includes(':') ? `${d.slice(0, 19)}…` : String(d ?? ''); }

const TIME_KEYS = /(_at|^last_push|^at|_time)$/;
const SIZE_KEYS = /(^size$|_bytes$|^bytes$)/;

/** A cell for any API value: times, sizes, booleans, lists and objects each read as themselves. */
function cell(key, value) {
  if (value === null || value === undefined) return h('span', { class: 'muted', text: '–' });
  if (TIME_KEYS.test(key) && (typeof value === 'number' || typeof value === 'string')) return humanTime(value);
  if (SIZE_KEYS.test(key) && typeof value === 'number') return h('span', { title: `${value} bytes`, text: humanSize(value) });
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (key === 'digest' || (typeof value === 'string' && /^sha256:[0-9a-f]{64}$/.test(value))) {
    return h('code', { title: value, text: shortDigest(value) });
  }
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== 'object' || v === null)) return value.length ? value.join(', ') : h('span', { class: 'muted', text: 'none' });
    return h('code', { class: 'json', text: JSON.stringify(value) });
  }
  if (typeof value === 'object') return h('code', { class: 'json', text: JSON.stringify(value) });
  return String(value);
}

function label(key) { return key.replace(/_/g, ' '); }

// ---------------------------------------------------------------- session -------------------

function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.token && s.exp * 1000 > Date.now()) return s;
  } catch (_) { /* a damaged entry is no session */ }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

/** What the signed-in user's role allows (the API checks it again on every call). */
function can(action, registry) {
  const s = session();
  if (!s) return false;
  const covers = !s.registries || (registry !== undefined && s.registries.includes(registry));
  const manager = MANAGER_ROLES.includes(s.role);
  switch (action) {
    case 'manage': return manager && covers;
    case 'admin': return manager && !s.registries;
    case 'pull': return covers && (manager || s.role === 'service-viewer');
    case 'push': return covers && (manager || s.role === 'image-uploader');
    default: return false;
  }
}

function tokenClaims(token) {
  const part = token.split('.')[1] || '';
  const padded = part.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((part.length + 3) % 4);
  const bin = atob(padded);
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
}

/** Exchanges the access key and secret for a management token (the password grant: a POST body,
 * so the secret is never in a URL), then reads the user's role. */
async function login(accessKey, secret) {
  const form = new URLSearchParams({ grant_type: 'password', username: accessKey, password: secret, scope: 'registry:management:*' });
  const res = await fetch('/auth/token', {
    method: 'POST', body: form, credentials: 'omit', cache: 'no-store',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  if (!res.ok) throw await apiError(res);
  const body = await res.json();
  const token = body.token || body.access_token;
  const claims = tokenClaims(token);
  const me = await fetchJson('GET', `/api/v1/users/${enc(claims.sub)}`, undefined, token);
  const s = { token, exp: claims.exp, user: claims.sub, key: claims.access_key_id, role: me.role, registries: me.registries ?? null };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  return s;
}

function logout(message) {
  sessionStorage.removeItem(SESSION_KEY);
  clearTimeout(expiry);
  clearTimers();
  showLogin(message);
}

// ---------------------------------------------------------------- API -----------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/** The API's error JSON ({"errors":[{code,message,detail}]}) as one readable message. */
async function apiError(res) {
  let code = `HTTP ${res.status}`;
  let text = res.statusText || 'request failed';
  try {
    const body = await res.json();
    const e = (body.errors || [])[0];
    if (e) {
      code = e.code || code;
      text = e.message || text;
      if (e.detail !== undefined && e.detail !== null && e.detail !== '') {
        const d = typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail);
        if (d !== text) text = `${text}: ${d}`;
      }
    }
  } catch (_) { /* not JSON */ }
  if (res.status === 429 && res.headers.get('Retry-After')) text += ` (retry in ${res.headers.get('Retry-After')} s)`;
  return new ApiError(res.status, code, text);
}

async function fetchJson(method, path, body, token) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token}` };
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const res = await fetch(path, init);
  if (!res.ok) throw await apiError(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** Calls the management API as the signed-in user; an expired or revoked session logs out. */
async function api(method, path, body) {
  const s = session();
  if (!s) {
    logout('Your session has ended. Log in again.');
    throw Object.assign(new ApiError(401, 'UNAUTHORIZED', 'not logged in'), { sessionEnded: true });
  }
  try {
    return await fetchJson(method, `/api/v1${path}`, body, s.token);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      logout(`Your session has ended (${e.message}). Log in again.`);
      e.sessionEnded = true;
    }
    throw e;
  }
}

// What the API accepts as names: the console checks names taken from its own URL against these
// before using them in a request, so a crafted link cannot aim an action at another path.
const IMAGE_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$/;
const REGISTRY_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** One path segment of an API request, escaped. `.` and `..` are refused: fetch() would resolve
 * them (even escaped as %2e) and send the request to another route. */
function enc(segment) {
  const text = String(segment);
  if (text === '.' || text === '..') throw new Error(`"${text}" is not a name`);
  return encodeURIComponent(text);
}

/** An image name in an API path: checked against the name grammar and sent as one escaped
 * segment (`team%2Fapp`): with its slashes kept, an image named `team/app/tags/v1` would read as
 * tag `v1` of `team/app`, and its Delete would delete that tag. */
function imagePath(name) {
  if (!IMAGE_NAME.test(name)) throw new Error(`"${name}" is not an image name`);
  return encodeURIComponent(name);
}

/** A query string value, escaped (any text may be searched for). */
const qv = encodeURIComponent;

// ---------------------------------------------------------------- alerts, timers ------------

function showAlert(message, kind) {
  const el = document.getElementById('alert');
  el.textContent = message;
  el.className = `alert ${kind || 'error'}`;
  el.hidden = !message;
}

/** Runs an action, showing what went wrong (the API's own words) or a success note. */
async function attempt(fn, success) {
  try {
    const result = await fn();
    if (success) showAlert(success, 'ok');
    return result;
  } catch (e) {
    // an ended session has already said so, over the login form
    if (!e.sessionEnded) showAlert(e instanceof ApiError ? `${e.code}: ${e.message}` : `Error: ${e.message}`);
    return undefined;
  }
}

// Each page drawn (and each logout) starts a generation: a poll or an answer that arrives for an
// older one does nothing, so a late reply never redraws or polls a page the user has left.
let generation = 0;
let timers = [];
function clearTimers() { generation += 1; timers.forEach(clearTimeout); timers = []; }
function later(fn, ms) {
  const mine = generation;
  timers.push(setTimeout(() => { if (mine === generation) fn(); }, ms));
}
/** Whether the page that started an action is still the one shown. */
function current(mine) { return mine === generation; }

// ---------------------------------------------------------------- building blocks -----------

function button(text, onclick, attrs) { return h('button', { type: 'button', onclick, ...(attrs || {}) }, text); }
function dangerButton(text, onclick, attrs) { return button(text, onclick, { class: 'danger', ...(attrs || {}) }); }

let fieldSeq = 0;
/** A labelled input; returns [wrapper, input]. */
function field(labelText, attrs) {
  fieldSeq += 1;
  const id = `f${fieldSeq}`;
  const input = attrs && attrs.tag === 'select'
    ? h('select', { id, name: attrs.name }, (attrs.options || []).map((o) => h('option', { value: o, text: o, selected: o === attrs.value ? true : undefined })))
    : attrs && attrs.tag === 'textarea'
      ? h('textarea', { id, name: attrs.name, rows: attrs.rows || 6, value: attrs.value, required: attrs.required })
      : h('input', { id, type: 'text', autocomplete: 'off', spellcheck: 'false', ...(attrs || {}) });
  const wrap = attrs && attrs.type === 'checkbox'
    ? h('div', { class: 'field check' }, input, h('label', { for: id, text: labelText }))
    : h('div', { class: 'field' }, h('label', { for: id, text: labelText }), input);
  return [wrap, input];
}

/** A form whose submit runs `onsubmit(values)`; `fields` are [label, name, attrs]. */
function form(title, fields, submitText, onsubmit) {
  const inputs = {};
  const f = h('form', { class: 'inline-form', 'aria-label': title });
  if (title) put(f, h('h3', { text: title }));
  for (const [text, name, attrs] of fields) {
    const [wrap, input] = field(text, { name, ...(attrs || {}) });
    inputs[name] = input;
    put(f, wrap);
  }
  put(f, h('button', { type: 'submit', text: submitText }));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const [name, input] of Object.entries(inputs)) values[name] = input.type === 'checkbox' ? input.checked : input.value.trim();
    const submit = f.querySelector('button[type=submit]');
    submit.disabled = true;
    try { await onsubmit(values, f); } finally { submit.disabled = false; }
  });
  return f;
}

let openapi = null;
async function schemaFor(method, path) {
  if (!openapi) openapi = await fetchJson('GET', '/api/v1/openapi.json', undefined, session()?.token || '');
  const op = openapi.paths?.[path]?.[method.toLowerCase()];
  const ref = op?.requestBody?.content?.['application/json']?.schema?.$ref;
  return ref ? openapi.components.schemas[ref.split('/').pop()] : null;
}

function skeleton(schema) {
  if (!schema) return {};
  if (schema.$ref) return skeleton(openapi.components.schemas[schema.$ref.split('/').pop()]);
  if (schema.default !== undefined) return schema.default;
  if (schema.enum) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  if (type === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(schema.properties || {})) if ((schema.required || []).includes(k) || v.default !== undefined) out[k] = skeleton(v);
    return out;
  }
  if (type === 'array') return [];
  if (type === 'boolean') return false;
  if (type === 'integer' || type === 'number') return 0;
  return '';
}

/** A create form for a resource whose body is richer than a few fields: a JSON editor seeded
 * from the request schema in the OpenAPI document, with the schema's field list beside it. */
function jsonForm(title, method, templatePath, apiPath, done) {
  const box = h('details', { class: 'json-form' }, h('summary', { text: title }));
  box.addEventListener('toggle', async () => {
    if (!box.open || box.dataset.ready) return;
    box.dataset.ready = '1';
    const schema = await attempt(() => schemaFor(method, templatePath));
    const props = schema?.properties || {};
    const f = form('', [['Request body (JSON)', 'body', { tag: 'textarea', rows: 10, value: JSON.stringify(skeleton(schema), null, 2) }]], title, async (v) => {
      let body;
      try { body = JSON.parse(v.body); } catch (e) { showAlert(`The body is not JSON: ${e.message}`); return; }
      const r = await attempt(() => api(method, apiPath, body), `${title}: done.`);
      if (r !== undefined) {
        // what was typed may hold credentials (a target's password, a webhook's auth header)
        f.querySelector('textarea').value = JSON.stringify(skeleton(schema), null, 2);
        done(r);
      }
    });
    put(box, f, h('dl', { class: 'schema' }, Object.entries(props).map(([k, p]) => [
      h('dt', {}, h('code', { text: k }), (schema.required || []).includes(k) ? ' (required)' : ''),
      h('dd', { text: [p.description, p.enum ? `one of ${p.enum.join(', ')}` : '', p.type ? `type ${[].concat(p.type).join('|')}` : ''].filter(Boolean).join('; ') }),
    ])));
  });
  return box;
}

/** A table of API objects; `columns` are keys (or [key, label, render]); `actions(item)` adds
 * buttons on each row. */
function table(items, columns, actions, caption) {
  if (!items.length) return h('p', { class: 'empty', text: 'Nothing here yet.' });
  const cols = (columns || Object.keys(items[0]).filter((k) => typeof items[0][k] !== 'object' || items[0][k] === null || Array.isArray(items[0][k])))
    .map((c) => (Array.isArray(c) ? c : [c, label(c), null]));
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', { text: caption }) : null,
    h('thead', {}, h('tr', {}, cols.map(([, l]) => h('th', { scope: 'col', text: l })), actions ? h('th', { scope: 'col', text: 'actions' }) : null)),
    h('tbody', {}, items.map((it) => h('tr', {},
      cols.map(([k, , render]) => h('td', {}, render ? render(it) : cell(k, it[k]))),
      actions ? h('td', { class: 'actions' }, actions(it)) : null)))));
}

/** The request of one page of a list the API pages (`n`, `last`; `base` may carry a query). */
function pages(base, n = PAGE_SIZE) {
  return (last) => `${base}${base.includes('?') ? '&' : '?'}n=${n}${last ? `&last=${qv(last)}` : ''}`;
}

/** A paged list: `path(last)` builds the request; keeps the cursors so Previous works. */
function pagedList(container, path, render) {
  const cursors = [null];
  let index = 0;
  const body = h('div', {});
  const prev = button('Previous page', () => { if (index > 0) { index -= 1; load(); } });
  const next = button('Next page', () => { index += 1; load(); });
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  put(container, body, h('div', { class: 'pager' }, prev, next, status));
  async function load() {
    const mine = generation;
    status.textContent = 'Loading…';
    const page = await attempt(() => api('GET', path(cursors[index])));
    if (!current(mine)) return;
    if (!page) { status.textContent = ''; return; }
    cursors[index + 1] = page.next;
    put(clear(body), render(page.items || []));
    prev.disabled = index === 0;
    next.disabled = !page.next;
    status.textContent = `Page ${index + 1}, ${page.items.length} shown${page.next ? '' : ' (last page)'}`;
    // a User Timing mark: when a list is on screen and usable (the benchmark reads it)
    performance.mark('berth:list-rendered');
  }
  load();
  // reload: back to the first page (after a change); refresh: the page shown again (a poll)
  return { reload: () => { cursors.length = 1; index = 0; return load(); }, refresh: () => load() };
}

function confirmThen(question, fn) { return () => { if (window.confirm(question)) fn(); }; }

function copyBlock(title, command) {
  const code = h('code', { text: command });
  const copy = button('Copy', async () => {
    try { await navigator.clipboard.writeText(command); copy.textContent = 'Copied'; } catch (_) { copy.textContent = 'Select and copy'; }
    later(() => { copy.textContent = 'Copy'; }, 1500);
  }, { 'aria-label': `Copy: ${title}` });
  return h('div', { class: 'copy' }, h('span', { class: 'copy-title', text: title }), h('pre', {}, code), copy);
}

function page(title, ...children) {
  const main = clear(document.getElementById('main'));
  document.title = `${title} · Berth console`;
  const heading = h('h1', { tabindex: '-1', text: title });
  put(main, heading, children);
  heading.focus();
  return main;
}

function crumbs(...parts) {
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('ol', {}, parts.map(([text, href]) => h('li', {}, href ? h('a', { href, text }) : h('span', { 'aria-current': 'page', text })))));
}

function section(title, ...children) { return h('section', { 'aria-label': title }, h('h2', { text: title }), ...children); }

// ---------------------------------------------------------------- routes --------------------

const R = {
  registry: (r, tab) => `#/registries/${encodeURIComponent(r)}${tab ? `/${tab}` : ''}`,
  image: (name) => `#/images/${encodeURIComponent(name)}`,
  artifact: (name, digest) => `#/images/${encodeURIComponent(name)}/artifacts/${encodeURIComponent(digest)}`,
  cleanupRun: (r, run) => `#/registries/${encodeURIComponent(r)}/cleanup/${encodeURIComponent(run)}`,
  webhook: (r, id) => `#/registries/${encodeURIComponent(r)}/webhooks/${encodeURIComponent(id)}`,
  replication: (r, id) => `#/registries/${encodeURIComponent(r)}/replication/${encodeURIComponent(id)}`,
  user: (u) => `#/users/${encodeURIComponent(u)}`,
};

const TABS = [
  ['images', 'Images'], ['cleanup', 'Cleanup'], ['protection', 'Protection'], ['webhooks', 'Webhooks'],
  ['replication', 'Replication'], ['scan', 'Scanning'], ['trust', 'Signatures'], ['access', 'Access and usage'],
];

/** Shows the page the location's fragment names; `keepAlert` keeps the last action's message
 * when a page is redrawn after it. */
function route(keepAlert) {
  clearTimers();
  if (keepAlert !== true) showAlert('');
  if (!session()) { showLogin(); return; }
  showChrome();
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').map((p) => { try { return decodeURIComponent(p); } catch (_) { return p; } });
  const [a, b, c, d] = parts;
  // names from the URL are checked before any page uses them in a request
  const bad = (why) => page('Not found', h('p', { text: why }), h('a', { href: '#/', text: 'Registries' }));
  if (parts.some((p) => p === '.' || p === '..')) return bad('A console address has no "." or ".." part.');
  if (a === 'registries' && b && !REGISTRY_NAME.test(b)) return bad(`"${b}" is not a registry name.`);
  if (a === 'images' && b && !IMAGE_NAME.test(b)) return bad(`"${b}" is not an image name.`);
  if (a === 'images' && d && !DIGEST.test(d)) return bad(`"${d}" is not a digest.`);
  if (!a) return registriesPage();
  if (a === 'registries' && b && !c) return registryPage(b, 'images');
  if (a === 'registries' && b && c === 'cleanup' && d) return cleanupRunPage(b, d);
  if (a === 'registries' && b && c === 'webhooks' && d) return webhookPage(b, d);
  if (a === 'registries' && b && c === 'replication' && d) return replicationPage(b, d);
  if (a === 'registries' && b && c) return registryPage(b, c);
  if (a === 'images' && b && !c) return imagePage(b);
  if (a === 'images' && b && c === 'artifacts' && d) return artifactPage(b, d);
  if (a === 'caches') return cachesPage();
  if (a === 'users' && b) return userPage(b);
  if (a === 'users') return usersPage();
  if (a === 'me') return userPage(session().user);
  if (a === 'gc') return gcPage();
  if (a === 'audit') return auditPage();
  return page('Not found', h('p', { text: 'The console has no such page.' }), h('a', { href: '#/', text: 'Registries' }));
}

let expiry = null;
/** Shows the navigation for the signed-in user and arms the session's expiry. */
function showChrome() {
  const s = session();
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent = `${s.user} (${s.role}${s.registries ? `: ${s.registries.join(', ')}` : ''})`;
  for (const a of document.querySelectorAll('[data-admin]')) a.hidden = !can('admin');
  document.getElementById('me-link').href = R.user(s.user);
  const left = s.exp * 1000 - Date.now();
  clearTimeout(expiry);
  expiry = setTimeout(() => { if (session() === null) logout('Your session expired. Log in again.'); else route(true); },
    Math.max(0, Math.min(left + 500, 2 ** 31 - 1)));
}

function showLogin(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  showAlert(message || '', 'info');
  const f = form('', [
    ['Access key', 'access_key', { autocomplete: 'username', required: true }],
    ['Secret key', 'secret_key', { type: 'password', autocomplete: 'current-password', required: true }],
  ], 'Log in', async (v) => {
    const s = await attempt(() => login(v.access_key, v.secret_key));
    if (s) { if (location.hash) route(); else location.hash = '#/'; }
  });
  f.id = 'login';
  page('Log in to Berth', h('p', { text: 'Use an access key and its secret key (from `berth user key add` or an administrator).' }), f);
  f.querySelector('input').focus();
}

// ---------------------------------------------------------------- pages: registries ---------

function registriesPage() {
  const main = page('Registries');
  const list = h('div', {});
  put(main, list);
  const paged = pagedList(list, pages(`/registries`), (items) => table(items, [
    ['name', 'registry', (r) => h('a', { href: R.registry(r.name), text: r.name })],
    'public_access',
    ['private_networks', 'private networks', (r) => cell('private_networks', r.private_networks)],
    ['cache', 'image cache', (r) => cell('cache', r.cache)], 'created_at',
  ], (r) => (can('manage', r.name) ? dangerButton('Delete', confirmThen(`Delete registry ${r.name} and every image in it?`, async () => {
    if (await attempt(() => api('DELETE', `/registries/${enc(r.name)}?force=true`), `Registry ${r.name} deleted.`) !== undefined) paged.reload();
  }), { 'aria-label': `Delete registry ${r.name}` }) : null)));
  if (can('admin')) {
    put(main, form('Create a registry', [
      ['Name', 'name', { required: true, pattern: '[a-z0-9]+([._\\-][a-z0-9]+)*', maxlength: 63 }],
      ['Public access', 'public_access', { type: 'checkbox', checked: true }],
    ], 'Create registry', async (v) => {
      if (await attempt(() => api('POST', '/registries', { name: v.name, public_access: v.public_access }), `Registry ${v.name} created.`) !== undefined) paged.reload();
    }));
  }
}

function registryPage(reg, tab) {
  const known = TABS.find(([t]) => t === tab) ? tab : 'images';
  const main = page(`Registry ${reg}`, crumbs(['Registries', '#/'], [reg]),
    h('nav', { class: 'tabs', 'aria-label': 'Registry sections' }, TABS.map(([t, text]) => h('a', { href: R.registry(reg, t), 'aria-current': t === known ? 'page' : undefined, text }))));
  const body = h('div', {});
  put(main, body);
  const pages = { access: accessTab, images: imagesTab, cleanup: cleanupTab, protection: protectionTab, webhooks: webhooksTab, replication: replicationTab, scan: scanTab, trust: trustTab };
  pages[known](reg, body);
}

async function accessTab(reg, body) {
  const path = `/registries/${enc(reg)}`;
  const r = await attempt(() => api('GET', path));
  if (!r) return;
  put(body, section('Access and usage', h('dl', { class: 'details' }, [
    ['images', String(r.image_count)], ['stored', h('span', { title: `${r.storage_bytes} bytes`, text: humanSize(r.storage_bytes) })],
    ['public access', r.public_access ? 'yes: from any address' : 'no: only from the private networks'],
    ['private networks', r.private_networks?.length ? r.private_networks.join(', ') : 'none'],
    ['image cache', r.cache || 'no (an ordinary registry)'], ['created', humanTime(r.created_at)], ['created by', r.created_by],
  ].map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)])),
  can('manage', reg) ? form('Change access', [
    ['Public access', 'public_access', { type: 'checkbox', checked: r.public_access }],
    ['Private networks (CIDRs, comma separated)', 'networks', { value: (r.private_networks || []).join(', ') }],
  ], 'Save access', async (v) => {
    const nets = v.networks.split(',').map((x) => x.trim()).filter(Boolean);
    if (await attempt(() => api('PATCH', path, { public_access: v.public_access, private_networks: nets }), 'Access saved.') !== undefined) route(true);
  }) : null));
}

function imagesTab(reg, body) {
  const host = location.host;
  const manage = can('manage', reg);
  put(body, h('p', {}, 'Push into this registry: ', h('code', { text: `docker push ${host}/${reg}/<image>:<tag>` })));
  const filter = field('Filter this page by name', { type: 'search', name: 'filter' });
  put(body, filter[0]);
  let items = [];
  const out = h('div', {});
  const render = () => put(clear(out), table(items.filter((i) => i.name.includes(filter[1].value)), [
    ['name', 'image', (i) => h('a', { href: R.image(i.name), text: i.name })],
    'artifact_count', 'size', 'storage_bytes', 'last_push',
  ], (i) => (manage ? dangerButton('Delete', confirmThen(`Delete image ${i.name} with all its artifacts and tags?`, async () => {
    if (await attempt(() => api('DELETE', `/images/${imagePath(i.name)}`), `Image ${i.name} deleted.`) !== undefined) paged.reload();
  }), { 'aria-label': `Delete image ${i.name}` }) : null)));
  filter[1].addEventListener('input', render);
  const paged = pagedList(body, pages(`/registries/${enc(reg)}/images`), (list) => { items = list; render(); return out; });
}

// ---------------------------------------------------------------- pages: image, artifact ----

function imagePage(name) {
  const reg = name.split('/')[0];
  const manage = can('manage', reg);
  const main = page(`Image ${name}`, crumbs(['Registries', '#/'], [reg, R.registry(reg)], [name]));
  const host = location.host;
  put(main, h('div', { class: 'commands' },
    can('pull', reg) ? copyBlock('docker pull', `docker pull ${host}/${name}:latest`) : null,
    can('push', reg) ? copyBlock('docker push', `docker push ${host}/${name}:<tag>`) : null));
  // offered once the image has answered: an action needs an object the API showed
  const actions = h('div', {});
  put(main, actions);
  const offerDelete = () => {
    if (!manage || actions.firstChild) return;
    put(actions, dangerButton('Delete image', confirmThen(`Delete image ${name} with all its artifacts and tags?`, async () => {
      if (await attempt(() => api('DELETE', `/images/${imagePath(name)}`), `Image ${name} deleted.`) !== undefined) navigate(R.registry(reg));
    }), { id: 'delete-image' }));
  };
  const list = section('Artifacts');
  let query = '';
  put(list, form('Search artifacts', [['Tag or digest contains', 'q', { type: 'search' }]], 'Search', (v) => { query = v.q; artifacts.reload(); }));
  put(main, list);
  const artifacts = pagedList(list, (last) => pages(`/images/${imagePath(name)}/artifacts${query ? `?q=${qv(query)}` : ''}`)(last), (items) => { offerDelete(); return table(items, [
    ['digest', 'artifact', (a) => h('a', { href: R.artifact(name, a.digest), title: a.digest }, h('code', { text: shortDigest(a.digest) }))],
    ['tags', 'tags', (a) => cell('tags', a.tags)],
    ['type', 'type', (a) => kindOf(a)],
    ['platforms', 'platforms', (a) => platforms(a)],
    'size', 'pushed_at', 'pulled_at',
    ['signature', 'signature', (a) => signatureText(a.signature)],
  ], (a) => (manage ? dangerButton('Delete', confirmThen(`Delete artifact ${a.digest} of ${name}, with its tags${(a.tags || []).length ? ` (${a.tags.join(', ')})` : ''} and referrers?`, async () => {
    if (await attempt(() => api('DELETE', `/images/${imagePath(name)}/artifacts/${enc(a.digest)}`), 'Artifact deleted.') !== undefined) route(true);
  }), { 'aria-label': `Delete artifact ${a.digest}` }) : null)); });
}

function kindOf(a) {
  const t = a.artifact_type || a.media_type || '';
  if (t.includes('helm')) return 'Helm chart';
  if (t.includes('index') || t.includes('manifest.list')) return 'image index';
  if (t.includes('cosign') || t.includes('sigstore')) return 'signature';
  if (/container\.image\.v1|image\.config\.v1/.test(t) || t.includes('image.manifest') || t.includes('distribution.manifest.v2')) return 'image';
  return t;
}

function platforms(a) {
  const p = (a.platforms || []).map((x) => [x.os, x.architecture, x.variant].filter(Boolean).join('/'));
  return p.length ? p.join(', ') : h('span', { class: 'muted', text: '–' });
}

function signatureText(sig) {
  if (!sig || !sig.signed) return 'unsigned';
  return sig.verified ? `verified (${sig.signatures})` : `signed (${sig.signatures})`;
}

async function artifactPage(name, digest) {
  const reg = name.split('/')[0];
  const main = page(`Artifact ${shortDigest(digest)}`, crumbs(['Registries', '#/'], [reg, R.registry(reg)], [name, R.image(name)], [shortDigest(digest)]));
  const a = await attempt(() => api('GET', `/images/${imagePath(name)}/artifacts/${enc(digest)}`));
  if (!a) return;
  const host = location.host;
  const ref = `${host}/${name}@${a.digest}`;
  const tag = (a.tags || [])[0];
  const isHelm = (a.artifact_type || a.media_type || '').includes('helm');
  put(main, section('Details', h('dl', { class: 'details' }, [
    ['image', name], ['digest', a.digest], ['media type', a.media_type], ['artifact type', a.artifact_type],
    ['size', h('span', { title: `${a.size} bytes`, text: humanSize(a.size) })], ['platforms', platforms(a)],
    ['pushed', humanTime(a.pushed_at)], ['last pulled', humanTime(a.pulled_at)], ['subject', a.subject],
    ['signature', signatureText(a.signature)],
    ['verified by keys', cell('verified_keys', a.signature?.verified_keys)],
  ].filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v instanceof Node ? v : String(v))]))));
  const pull = can('pull', reg);
  const push = can('push', reg);
  put(main, section('Pull and push commands', h('div', { class: 'commands' },
    pull ? copyBlock('docker', `docker pull ${ref}`) : null,
    pull && tag ? copyBlock('docker (tag)', `docker pull ${host}/${name}:${tag}`) : null,
    pull && isHelm ? copyBlock('helm', tag ? `helm pull oci://${host}/${name} --version ${tag}` : `helm pull oci://${host}/${name}@${a.digest}`) : null,
    pull ? copyBlock('oras', `oras pull ${ref}`) : null,
    pull ? copyBlock('cosign verify', `cosign verify --key cosign.pub ${ref}`) : null,
    push ? copyBlock('cosign sign', `cosign sign --key cosign.key ${ref}`) : null,
    pull ? copyBlock('skopeo', `skopeo copy docker://${ref} oci:./image`) : null,
    !pull && !push ? h('p', { class: 'muted', text: 'Your role may neither pull nor push here.' }) : null)));
  const tagsSection = section('Tags');
  put(main, tagsSection);
  tagsPanel(tagsSection, name, reg, a.digest);
  if ((a.referrers || []).length) {
    put(main, section('Referrers (signatures, SBOMs, attestations)', table(a.referrers, [
      ['digest', 'artifact', (r) => h('a', { href: R.artifact(name, r.digest) }, h('code', { text: shortDigest(r.digest) }))], 'artifact_type'])));
  }
  const scan = section('Vulnerability scan');
  put(main, scan);
  scanPanel(scan, name, reg, a.digest);
  if (can('manage', reg)) {
    put(main, section('Delete', dangerButton('Delete artifact', confirmThen(`Delete artifact ${a.digest} with its referrers?`, async () => {
      if (await attempt(() => api('DELETE', `/images/${imagePath(name)}/artifacts/${enc(a.digest)}`), 'Artifact deleted.') !== undefined) navigate(R.image(name));
    }))));
  }
}

function tagsPanel(container, name, reg, digest) {
  const manage = can('manage', reg);
  const out = h('div', {});
  const search = form('Search tags', [['Tag contains', 'q', { type: 'search' }]], 'Search', (v) => { query = v.q; paged.reload(); });
  let query = '';
  put(container, search, out);
  const paged = pagedList(out, (last) => pages(`/images/${imagePath(name)}/tags${query ? `?q=${qv(query)}` : ''}`)(last), (items) => table(items, [
    ['name', 'tag', (t) => h('code', { text: t.name })],
    ['digest', 'points at', (t) => (!t.digest ? h('span', { class: 'muted', text: '–' }) : t.digest === digest ? 'this artifact'
      : h('a', { href: R.artifact(name, t.digest) }, h('code', { text: shortDigest(t.digest) })))],
  ], (t) => (manage ? dangerButton('Delete', confirmThen(`Delete tag ${t.name}?`, async () => {
    if (await attempt(() => api('DELETE', `/images/${imagePath(name)}/tags/${enc(t.name)}`), `Tag ${t.name} deleted.`) !== undefined) paged.reload();
  }), { 'aria-label': `Delete tag ${t.name}` }) : null)));
  if (manage) {
    put(container, form('Tag this artifact', [['New tag', 'tag', { required: true, pattern: '[A-Za-z0-9_][A-Za-z0-9._\\-]{0,127}' }]], 'Create tag', async (v) => {
      if (await attempt(() => api('PUT', `/images/${imagePath(name)}/tags/${enc(v.tag)}`, { digest }), `Tag ${v.tag} now points at this artifact.`) !== undefined) paged.reload();
    }));
  }
}

async function scanPanel(container, name, reg, digest) {
  const out = h('div', {});
  put(container, out);
  const path = `/images/${imagePath(name)}/artifacts/${enc(digest)}/scan`;
  const mine = generation;
  const load = async () => {
    let scan;
    try { scan = await api('GET', path); } catch (e) {
      if (!current(mine)) return;
      put(clear(out), h('p', { text: `${e.code}: ${e.message}` }));
      scan = null;
    }
    if (!current(mine)) return;
    if (scan) {
      const findings = scan.findings || [];
      const running = scan.status === 'scanning';
      put(clear(out), h('p', { role: 'status' }, 'Status: ', h('strong', { text: (scan.status || 'unknown').replace(/_/g, ' ') }),
        running && scan.layers_total ? ` (${scan.layers_done} of ${scan.layers_total} layers)` : '',
        scan.finished_at ? [' · finished ', humanTime(scan.finished_at)] : '',
        scan.error ? [' · ', scan.error] : ''),
      scan.os || scan.packages ? h('p', { text: `${scan.os ? `OS: ${scan.os}; ` : ''}${scan.packages ?? 0} packages` }) : null,
      running && findings.length ? h('p', { class: 'muted', text: 'The findings below are from the previous scan.' }) : null,
      scan.counts ? h('p', {}, `Highest severity: ${scan.severity || 'none'}; ${scan.total} findings (${scan.fixable} fixable): `,
        Object.entries(scan.counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'none') : null,
      findings.length ? table(findings.slice(0, 200), ['id', 'severity', 'package', 'version', 'fix_version', 'allowlisted'], null,
        `Findings (${findings.length}${findings.length > 200 ? ', the first 200' : ''})`) : null);
      if (running) later(load, POLL_MS);
      // who may push may start and stop scans (the API's rule)
      if (can('push', reg)) {
        put(out, running
          ? button('Stop scan', async () => { if (await attempt(() => api('DELETE', path), 'Scan stopped.') !== undefined) load(); })
          : button('Scan now', async () => { if (await attempt(() => api('POST', path), 'Scan started.') !== undefined) load(); }));
      }
    }
  };
  load();
}

// ---------------------------------------------------------------- pages: policies ----------

function cleanupTab(reg, body) {
  const base = `/registries/${enc(reg)}/cleanup`;
  const manage = can('manage', reg);
  const rules = section('Cleanup rules');
  const loadRules = async () => {
    const r = await attempt(() => api('GET', `${base}/rules`));
    if (!r) return;
    put(clear(rulesOut), table(r.items || [], ['id', 'image', 'tag', 'tag_mode', 'untagged', 'keep', 'enabled', 'created_at'], manage ? (x) => [
      button(x.enabled ? 'Disable' : 'Enable', async () => { if (await attempt(() => api('PATCH', `${base}/rules/${enc(x.id)}`, { enabled: !x.enabled })) !== undefined) loadRules(); }),
      dangerButton('Delete', confirmThen(`Delete cleanup rule ${x.id}?`, async () => { if (await attempt(() => api('DELETE', `${base}/rules/${enc(x.id)}`), 'Rule deleted.') !== undefined) loadRules(); }), { 'aria-label': `Delete cleanup rule ${x.id}` }),
    ] : null));
  };
  const rulesOut = h('div', {});
  put(rules, rulesOut);
  if (manage) {
    put(rules, form('Add a cleanup rule', [
      ['Image pattern', 'image', { required: true, value: '**' }], ['Tag pattern', 'tag', { required: true, value: '**' }],
      ['Tag mode', 'tag_mode', { tag: 'select', options: ['match', 'exclude'] }],
      ['Untagged artifacts too', 'untagged', { type: 'checkbox' }],
      ['Keep (latest-pushed:K, latest-pulled:K, pushed-within:Nd, pulled-within:Nd, always)', 'keep', { required: true, value: 'latest-pushed:10' }],
    ], 'Add rule', async (v) => { if (await attempt(() => api('POST', `${base}/rules`, v), 'Rule added.') !== undefined) loadRules(); }));
  }
  const cycle = section('Cleanup cycle');
  const cycleOut = h('p', {});
  put(cycle, cycleOut);
  const loadCycle = async () => {
    const c = await attempt(() => api('GET', `${base}/schedule`));
    if (c) put(clear(cycleOut), c.cron ? ['Runs on ', h('code', { text: c.cron }), ' (UTC); next ', humanTime(c.next_run_at)] : 'No cycle: cleanup runs only when started.');
  };
  if (manage) {
    put(cycle, form('Set the cycle', [['Cron (minute hour day month weekday, UTC)', 'cron', { required: true, value: '0 3 * * *' }]], 'Save cycle', async (v) => {
      if (await attempt(() => api('PUT', `${base}/schedule`, { cron: v.cron }), 'Cycle saved.') !== undefined) loadCycle();
    }), button('Remove the cycle', async () => { if (await attempt(() => api('DELETE', `${base}/schedule`), 'Cycle removed.') !== undefined) loadCycle(); }));
  }
  const runs = section('Cleanup history');
  const runsOut = h('div', {});
  if (manage) {
    put(runs, h('div', { class: 'buttons' },
      button('Test run', async () => { if (await attempt(() => api('POST', `${base}/runs`, { dry_run: true }), 'Test run queued: nothing will be deleted.') !== undefined) runsList.reload(); }),
      dangerButton('Run now', confirmThen('Run cleanup now? It deletes what the rules select.', async () => { if (await attempt(() => api('POST', `${base}/runs`, { dry_run: false }), 'Cleanup run queued.') !== undefined) runsList.reload(); }))));
  }
  put(runs, runsOut);
  const runsList = pagedList(runsOut, pages(`${base}/runs`, 20), (items) => {
    if (items.some((r) => ['queued', 'running'].includes(r.status))) later(() => runsList.refresh(), POLL_MS);
    return table(items, [
      ['id', 'run', (r) => h('a', { href: R.cleanupRun(reg, r.id), text: r.id })],
      ['dry_run', 'kind', (r) => (r.dry_run ? 'test run' : 'run')], 'status', 'queued_at', 'finished_at',
      ['counts', 'result', (r) => runCounts(r)],
    ]);
  });
  put(body, rules, cycle, runs);
  loadRules();
  loadCycle();
}

function runCounts(r) {
  const keys = ['images', 'total', 'deleted', 'retained', 'protected', 'failed'].filter((k) => typeof r[k] === 'number');
  return keys.map((k) => `${r[k]} ${label(k)}`).join(', ') + (r.error ? ` (error: ${r.error})` : '');
}

async function cleanupRunPage(reg, run) {
  const main = page(`Cleanup run ${run}`, crumbs(['Registries', '#/'], [reg, R.registry(reg, 'cleanup')], [`run ${run}`]));
  const out = h('div', {});
  put(main, out);
  const mine = generation;
  const load = async (chunk) => {
    const r = await attempt(() => api('GET', `/registries/${enc(reg)}/cleanup/runs/${enc(run)}${chunk ? `?chunk=${qv(chunk)}` : ''}`));
    if (!r || !current(mine)) return;
    const { decisions, next_chunk: nextChunk, ...summary } = r;
    put(clear(out),
      h('dl', { class: 'details' }, Object.entries(summary).map(([k, v]) => [h('dt', { text: label(k) }), h('dd', {}, cell(k, v))])),
      section(r.dry_run ? 'Decisions (a test run: nothing was deleted)' : 'Decisions',
        table(decisions || [], ['image', 'digest', 'tags', 'pushed_at', 'pulled_at', 'action', 'reason', 'done'].filter((k) => !decisions?.length || k in decisions[0]))),
      nextChunk ? button('More decisions', () => load(nextChunk)) : null);
    if (['queued', 'running'].includes(r.status)) later(() => load(chunk), POLL_MS);
  };
  load();
}

function protectionTab(reg, body) {
  const base = `/registries/${enc(reg)}/protection/rules`;
  const manage = can('manage', reg);
  const out = h('div', {});
  const load = async () => {
    const r = await attempt(() => api('GET', base));
    if (r) put(clear(out), table(r.items || [], ['id', 'image', 'tag', 'enabled', 'created_at'], manage ? (x) => [
      button(x.enabled ? 'Disable' : 'Enable', async () => { if (await attempt(() => api('PATCH', `${base}/${enc(x.id)}`, { enabled: !x.enabled })) !== undefined) load(); }),
      dangerButton('Delete', confirmThen(`Delete protection rule ${x.id}?`, async () => { if (await attempt(() => api('DELETE', `${base}/${enc(x.id)}`), 'Rule deleted.') !== undefined) load(); }), { 'aria-label': `Delete protection rule ${x.id}` }),
    ] : null));
  };
  put(body, section('Protection rules', h('p', { text: 'A protected tag cannot be pushed over, deleted or cleaned up.' }), out,
    manage ? form('Add a protection rule', [['Image pattern', 'image', { required: true, value: '**' }], ['Tag pattern', 'tag', { required: true, value: 'v*' }]], 'Add rule',
      async (v) => { if (await attempt(() => api('POST', base, v), 'Rule added.') !== undefined) load(); }) : null));
  load();
}

// ---------------------------------------------------------------- pages: webhooks, replication

/** Shows a secret the API returns once (a new webhook's signing secret, a new access key). */
function oneTimeSecret(target, title, pairs) {
  put(clear(target), h('div', { class: 'secret', role: 'status' },
    h('p', { text: `${title}: copy it now, it is shown only this once.` }),
    pairs.map(([t, v]) => copyBlock(t, v))));
}

function webhooksTab(reg, body) {
  const base = `/registries/${enc(reg)}/webhooks`;
  const manage = can('manage', reg);
  const out = h('div', {});
  const secret = h('div', {});
  let webhookRowsList = null;
  const load = () => webhookRowsList.reload();
  const webhookRows = (items) => table(items, [
      ['id', 'webhook', (w) => h('a', { href: R.webhook(reg, w.id), text: w.name || w.id })], 'url', 'type', 'format',
      ['events', 'events', (w) => cell('events', w.events)], 'enabled', 'created_at',
    ], manage ? (w) => [
      button('Send a test', async () => {
        const t = await attempt(() => api('POST', `${base}/${enc(w.id)}/test`));
        const d = t && (t.delivery || t);
        if (d) {
          const last = (d.attempts || []).at(-1);
          showAlert(`Test delivery ${d.status || ''}${last ? `: ${last.status ?? ''} ${last.error ?? ''}` : ''}`.trim(), d.status === 'delivered' ? 'ok' : 'info');
        }
      }, { 'aria-label': `Send a test to webhook ${w.name || w.id}` }),
      button(w.enabled ? 'Disable' : 'Enable', async () => {
        if (await attempt(() => api('PATCH', `${base}/${enc(w.id)}`, { enabled: !w.enabled })) !== undefined) load();
      }, { 'aria-label': `${w.enabled ? 'Disable' : 'Enable'} webhook ${w.name || w.id}` }),
      button('Rotate secret', confirmThen(`Issue a new signing secret for ${w.name || w.id}? Receivers must switch to it.`, async () => {
        const n = await attempt(() => api('PATCH', `${base}/${enc(w.id)}`, { rotate_secret: true }));
        if (n && n.secret) oneTimeSecret(secret, `The new signing secret of ${w.name || w.id}`, [['secret', n.secret]]);
      }), { 'aria-label': `Rotate the signing secret of webhook ${w.name || w.id}` }),
      dangerButton('Delete', confirmThen(`Delete webhook ${w.name || w.id}?`, async () => { if (await attempt(() => api('DELETE', `${base}/${enc(w.id)}`), 'Webhook deleted.') !== undefined) load(); }), { 'aria-label': `Delete webhook ${w.name || w.id}` }),
    ] : null);
  const created = (w) => {
    if (w && w.secret) oneTimeSecret(secret, `The signing secret of ${w.name || w.id}`, [['secret', w.secret]]);
    load();
  };
  put(body, section('Webhooks', secret, out, manage ? jsonForm('Create a webhook', 'POST', '/api/v1/registries/{registry}/webhooks', base, created) : null));
  webhookRowsList = pagedList(out, pages(base), webhookRows);
}

function webhookPage(reg, id) {
  const main = page(`Webhook ${id}`, crumbs(['Registries', '#/'], [reg, R.registry(reg, 'webhooks')], [id]));
  const base = `/registries/${enc(reg)}/webhooks/${enc(id)}`;
  const list = section('Deliveries');
  put(main, list);
  const lastAttempt = (d) => { const a = (d.attempts || []).at(-1); return a ? `${a.status ?? ''} ${a.error ?? ''}`.trim() || '–' : '–'; };
  const paged = pagedList(list, pages(`${base}/deliveries`), (items) => table(items, [
    'id', 'event_type', 'status', 'created_at', 'next_attempt_at',
    ['attempts', 'attempts', (d) => String((d.attempts || []).length)], ['last', 'last attempt', lastAttempt],
  ], can('manage', reg) ? (d) => (d.event_type === 'PING' ? null : button('Redeliver', async () => {
    if (await attempt(() => api('POST', `${base}/deliveries/${enc(d.id)}/redeliver`), 'Redelivery queued.') !== undefined) paged.refresh();
  }, { 'aria-label': `Redeliver ${d.id}` })) : null));
}

function replicationTab(reg, body) {
  const manage = can('manage', reg);
  const tBase = `/registries/${enc(reg)}/replication-targets`;
  const rBase = `/registries/${enc(reg)}/replications`;
  const targets = h('div', {});
  const reps = h('div', {});
  let targetRowsList = null;
  const loadTargets = () => targetRowsList.reload();
  const targetRows = (items) => table(items, ['id', 'name', 'kind', 'url', 'description', 'created_at'].map((c) => [c, label(c), (t) => cell(c, t[c])]),
      manage ? (t) => dangerButton('Delete', confirmThen(`Delete target ${t.name || t.id}?`, async () => {
        if (await attempt(() => api('DELETE', `${tBase}/${enc(t.id)}`), 'Target deleted.') !== undefined) loadTargets();
      }), { 'aria-label': `Delete target ${t.name || t.id}` }) : null);
  const trigger = (x) => (x.trigger ? [x.trigger.type, x.trigger.cron].filter(Boolean).join(' ') : '–');
  let policyRowsList = null;
  const loadReps = () => policyRowsList.reload();
  const policyRows = (items) => table(items, [
      ['id', 'replication', (x) => h('a', { href: R.replication(reg, x.id), text: x.name || x.id })],
      ...['target', 'destination', 'name_filter', 'tag_filter', 'tag_filter_mode'].map((c) => [c, label(c), (x) => cell(c, x[c])]),
      ['trigger', 'trigger', trigger],
      ['status', 'status', (x) => [x.status || (x.enabled ? 'Enabled' : 'Disabled'), x.status_reason ? ` (${x.status_reason})` : '']],
    ], manage ? (x) => [
      button('Run now', async () => { await attempt(() => api('POST', `${rBase}/${enc(x.id)}/run`), 'Replication started; see its history.'); }, { 'aria-label': `Run replication ${x.name || x.id} now` }),
      button(x.enabled ? 'Disable' : 'Enable', async () => {
        if (await attempt(() => api('PATCH', `${rBase}/${enc(x.id)}`, { enabled: !x.enabled })) !== undefined) loadReps();
      }, { 'aria-label': `${x.enabled ? 'Disable' : 'Enable'} replication ${x.name || x.id}` }),
      dangerButton('Delete', confirmThen(`Delete replication ${x.name || x.id}?`, async () => { if (await attempt(() => api('DELETE', `${rBase}/${enc(x.id)}`), 'Replication deleted.') !== undefined) loadReps(); }), { 'aria-label': `Delete replication ${x.name || x.id}` }),
    ] : null);
  put(body,
    section('Replication targets', targets, manage ? jsonForm('Add a target', 'POST', '/api/v1/registries/{registry}/replication-targets', tBase, loadTargets) : null),
    section('Replication policies', reps, manage ? jsonForm('Create a replication', 'POST', '/api/v1/registries/{registry}/replications', rBase, loadReps) : null));
  targetRowsList = pagedList(targets, pages(tBase), targetRows);
  policyRowsList = pagedList(reps, pages(rBase), policyRows);
}

function replicationPage(reg, id) {
  const main = page(`Replication ${id}`, crumbs(['Registries', '#/'], [reg, R.registry(reg, 'replication')], [id]));
  const base = `/registries/${enc(reg)}/replications/${enc(id)}/executions`;
  const list = section('History (executions)');
  const tasks = section('Tasks');
  put(main, list, tasks);
  const paged = pagedList(list, pages(`${base}`, 20), (items) => {
    if (items.some((e) => e.status === 'running')) later(() => paged.refresh(), POLL_MS);
    return table(items, null, (e) => button('Show tasks', () => {
      put(clear(tasks), h('h2', { text: `Tasks of ${e.id}` }));
      pagedList(tasks, pages(`${base}/${enc(e.id)}/tasks`), (t) => table(t));
    }, { 'aria-label': `Show the tasks of execution ${e.id}` }));
  });
}

// ---------------------------------------------------------------- pages: scanning, trust ----

async function scanTab(reg, body) {
  const path = `/registries/${enc(reg)}/scan-settings`;
  const s = await attempt(() => api('GET', path));
  if (!s) return;
  const ids = (s.allowlist?.ids || []).join('\n');
  const expires = s.allowlist?.expires_at ? toDate(s.allowlist.expires_at).toISOString().slice(0, 10) : '';
  put(body, section('Scan settings and CVE allowlist',
    h('dl', { class: 'details' }, [
      ['scan on push', s.scan_on_push ? 'yes' : 'no'],
      ['prevent pull at or above', s.prevent_pull || 'off'],
      ['allowlisted CVEs', ids ? ids.split('\n').join(', ') : 'none of its own: the common allowlist (_all, managed with the API or CLI) applies'],
      ['allowlist expires', expires || 'never'],
    ].map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])),
    can('manage', reg) ? form('Change the settings', [
      ['Scan on push', 'scan_on_push', { type: 'checkbox', checked: s.scan_on_push }],
      ['Prevent pull at or above', 'prevent_pull', { tag: 'select', options: ['off', 'Negligible', 'Low', 'Medium', 'High', 'Critical'], value: s.prevent_pull || 'off' }],
      ['Allowlisted CVE ids (one per line)', 'ids', { tag: 'textarea', rows: 4, value: ids }],
      ['Allowlist expires (YYYY-MM-DD, empty for never)', 'expires', { value: expires, pattern: '\\d{4}-\\d{2}-\\d{2}' }],
    ], 'Save settings', async (v) => {
      const b = { scan_on_push: v.scan_on_push, prevent_pull: v.prevent_pull === 'off' ? null : v.prevent_pull };
      const expiresAt = v.expires === expires ? (s.allowlist?.expires_at ?? null)
        : v.expires ? Math.floor(Date.parse(`${v.expires}T23:59:59Z`) / 1000) : null;
      if (v.ids) b.allowlist = { ids: v.ids, expires_at: expiresAt };
      if (await attempt(() => api('PUT', path, b), 'Scan settings saved.') !== undefined) route(true);
    }) : null));
}

async function trustTab(reg, body) {
  const path = `/registries/${enc(reg)}/trust`;
  const t = await attempt(() => api('GET', path));
  if (!t) return;
  const manage = can('manage', reg);
  put(body, section('Trust mode', h('p', {}, 'Pulls need: ', h('strong', { text: t.mode })),
    manage ? form('Change the mode', [['Mode', 'mode', { tag: 'select', options: ['off', 'any-signature', 'trusted-keys'], value: t.mode }]], 'Save mode', async (v) => {
      if (await attempt(() => api('PUT', path, { mode: v.mode }), 'Trust mode saved.') !== undefined) route(true);
    }) : null),
  section('Trusted keys', table(t.keys || [], ['id', 'name', 'algorithm', 'added_at', 'added_by'], manage ? (k) => dangerButton('Delete', confirmThen(`Stop trusting key ${k.name || k.id}?`, async () => {
    if (await attempt(() => api('DELETE', `${path}/keys/${enc(k.id)}`), 'Key removed.') !== undefined) route(true);
  }), { 'aria-label': `Delete key ${k.name || k.id}` }) : null),
  manage ? form('Trust a public key', [['Name', 'name', { required: true }], ['Public key (PEM, e.g. cosign.pub)', 'pem', { tag: 'textarea', rows: 6, required: true }]], 'Add key', async (v) => {
    if (await attempt(() => api('POST', `${path}/keys`, { name: v.name, pem: v.pem }), 'Key added.') !== undefined) route(true);
  }) : null));
}

// ---------------------------------------------------------------- pages: caches, users, gc, audit

function cachesPage() {
  const main = page('Image caches');
  const out = h('div', {});
  const admin = can('admin');
  const list = pagedList(out, pages('/caches'), (items) => table(items, null, admin ? (c) => dangerButton('Delete', confirmThen(`Delete image cache ${c.name}?`, async () => {
    if (await attempt(() => api('DELETE', `/caches/${enc(c.name)}`), 'Cache deleted.') !== undefined) list.reload();
  }), { 'aria-label': `Delete image cache ${c.name}` }) : null));
  put(main, out, admin ? jsonForm('Create an image cache', 'POST', '/api/v1/caches', '/caches', () => list.reload()) : null);
}

function usersPage() {
  if (!can('admin')) return page('Users', h('p', { text: 'Only an administrator of every registry manages users. Your own keys: ' }, h('a', { href: R.user(session().user), text: 'My access keys' })));
  const main = page('Users');
  const list = h('div', {});
  put(main, list);
  const paged = pagedList(list, pages(`/users`), (items) => table(items, [
    ['name', 'user', (u) => h('a', { href: R.user(u.name), text: u.name })], 'role',
    ['registries', 'registries', (u) => (u.registries ? u.registries.join(', ') : 'all')], 'created_at', 'created_by',
  ], (u) => (u.name === session().user ? null : dangerButton('Delete', confirmThen(`Delete user ${u.name} and their access keys?`, async () => {
    if (await attempt(() => api('DELETE', `/users/${enc(u.name)}`), `User ${u.name} deleted.`) !== undefined) paged.reload();
  }), { 'aria-label': `Delete user ${u.name}` }))));
  put(main, form('Create a user', [
    ['Name', 'name', { required: true }],
    ['Role', 'role', { tag: 'select', options: ['service-viewer', 'image-uploader', 'project-member', 'project-admin', 'service-admin'] }],
    ['Registries (comma separated; empty for all)', 'registries'],
  ], 'Create user', async (v) => {
    const registries = v.registries ? v.registries.split(',').map((x) => x.trim()).filter(Boolean) : null;
    if (await attempt(() => api('POST', '/users', { name: v.name, role: v.role, registries }), `User ${v.name} created.`) !== undefined) paged.reload();
  }));
}

async function userPage(name) {
  const self = name === session().user;
  const main = page(self ? 'My access keys' : `User ${name}`, can('admin') ? crumbs(['Users', '#/users'], [name]) : null);
  const u = await attempt(() => api('GET', `/users/${enc(name)}`));
  if (!u) return;
  put(main, h('dl', { class: 'details' }, [['user', u.name], ['role', u.role], ['registries', u.registries ? u.registries.join(', ') : 'all'], ['created', humanTime(u.created_at)]]
    .map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)])));
  if (can('admin') && !self) {
    put(main, form('Change the role', [
      ['Role', 'role', { tag: 'select', options: ['service-viewer', 'image-uploader', 'project-member', 'project-admin', 'service-admin'], value: u.role }],
      ['Registries (comma separated; empty for all)', 'registries', { value: u.registries ? u.registries.join(',') : '' }],
    ], 'Save role', async (v) => {
      const registries = v.registries ? v.registries.split(',').map((x) => x.trim()).filter(Boolean) : null;
      if (await attempt(() => api('PATCH', `/users/${enc(name)}`, { role: v.role, registries }), 'Role saved.') !== undefined) route(true);
    }));
  }
  const keys = section('Access keys');
  const secret = h('div', { role: 'status' });
  const out = h('div', {});
  put(keys, secret, out);
  const showSecret = (k) => oneTimeSecret(secret, 'The secret key', [['access key', k.access_key || k.id], ['secret key', k.secret_key || k.secret]]);
  const mineKey = (k) => self && (k.access_key || k.id) === session().key;
  let keyList = null;
  const load = () => keyList.reload();
  const keyRows = (items) => table(items, [['id', 'access key', (k) => [h('code', { text: k.access_key || k.id }), mineKey(k) ? ' (this session)' : '']], 'created_at', 'rotated_at', 'last_used_at'], (k) => {
      const id = k.access_key || k.id;
      return [
        button('Rotate', confirmThen(mineKey(k) ? `Replace the secret of ${id}, the key this session uses? The console logs in again with the new one.`
          : `Replace the secret of ${name}'s key ${id}? The old secret stops working.`, async () => {
          const n = await attempt(() => api('POST', `/users/${enc(name)}/keys/${enc(id)}/rotate`));
          if (!n) return;
          if (mineKey(k)) {
            // the old token died with the old secret: a new one from the new secret
            await attempt(() => login(id, n.secret_key));
            showChrome();
          }
          showSecret(n);
          load();
        }), { 'aria-label': `Rotate access key ${id}` }),
        dangerButton('Revoke', confirmThen(mineKey(k) ? `Revoke ${id}, the key this session uses? You will be logged out.`
          : `Revoke ${name}'s key ${id}? Tokens it obtained stop working too.`, async () => {
          if (await attempt(() => api('DELETE', `/users/${enc(name)}/keys/${enc(id)}`), 'Key revoked.') !== undefined) {
            if (mineKey(k)) logout('You revoked the key this session used.'); else load();
          }
        }), { 'aria-label': `Revoke access key ${id}` }),
      ];
    });
  put(keys, button('Create an access key', async () => { const k = await attempt(() => api('POST', `/users/${enc(name)}/keys`)); if (k) { showSecret(k); load(); } }));
  put(main, keys);
  keyList = pagedList(out, pages(`/users/${enc(name)}/keys`), keyRows);
}

function gcPage() {
  if (!can('admin')) return page('Garbage collection', h('p', { text: 'Only an administrator of every registry runs garbage collection.' }));
  const main = page('Garbage collection', h('p', { text: 'Deletes blobs no manifest references any more (after a grace period).' }));
  const out = h('div', {});
  put(main, h('div', { class: 'buttons' },
    button('Dry run', async () => { if (await attempt(() => api('POST', '/gc/runs', { dry_run: true }), 'Dry run queued.') !== undefined) list.reload(); }),
    dangerButton('Collect garbage now', confirmThen('Delete unreferenced blobs now?', async () => { if (await attempt(() => api('POST', '/gc/runs', { dry_run: false }), 'Garbage collection queued.') !== undefined) list.reload(); }))), out);
  const list = pagedList(out, pages(`/gc/runs`, 20), (items) => {
    if (items.some((r) => ['queued', 'running'].includes(r.status))) later(() => list.refresh(), POLL_MS);
    return table(items, ['id', 'dry_run', 'status', 'queued_at', 'finished_at', 'blobs_scanned', 'blobs_deleted', 'bytes_deleted', 'errors', 'error']);
  });
}

function auditPage() {
  if (!can('admin')) return page('Audit log', h('p', { text: 'Only an administrator of every registry reads the audit log.' }));
  const main = page('Audit log');
  pagedList(main, pages(`/audit`), (items) => table(items));
}

// ---------------------------------------------------------------- start ---------------------

// after an action that leaves its page (a delete), the next page keeps the action's message
let keepAlertOnce = false;
/** Goes to another page, keeping the message of the action that led there. */
function navigate(fragment) {
  keepAlertOnce = true;
  location.hash = fragment;
}
window.addEventListener('hashchange', () => { const keep = keepAlertOnce; keepAlertOnce = false; route(keep); });
document.getElementById('logout').addEventListener('click', () => {
  if (location.hash && location.hash !== '#/') history.replaceState(null, '', '#/');
  logout('You have logged out.');
});
// the skip link moves focus without changing the fragment the router reads
document.querySelector('.skip').addEventListener('click', (ev) => { ev.preventDefault(); document.getElementById('main').focus(); });
document.getElementById('booting')?.remove();
route();

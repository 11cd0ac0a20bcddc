//! Planning a manifest put: the writes and checks of one transaction.

#[allow(unused_imports)]
use super::*;

// --- manifest puts ---

/// A manifest put, prepared once and attempted until it commits or is refused.
pub(super) struct PutPlan<'a> {
    pub(super) record: &'a ManifestRecord,
    pub(super) repo: &'a str,
    pub(super) digest: String,
    /// distinct blobs, in the record's order
    pub(super) blobs: Vec<&'a Digest>,
    /// distinct children, in the record's order
    pub(super) children: Vec<&'a Digest>,
    /// distinct tags
    pub(super) tags: Vec<&'a str>,
    /// identifies the blob-reference and child items this put writes
    pub(super) token: String,
    /// `created_at` of those items
    pub(super) wall: i64,
    /// the manifest update's SET/REMOVE clauses and their values
    pub(super) fields: String,
    pub(super) field_values: Item,
    /// the outbox writes of the events this put reports, in its first transaction
    pub(super) events: Vec<Write>,
}

pub(super) fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

impl<'a> PutPlan<'a> {
    pub(super) fn new(record: &'a ManifestRecord, tags: &'a [Tag]) -> Result<Self, MetadataError> {
        let repo = record.repo.as_str();
        let digest = record.digest.to_string();
        let mut set = vec![
            "#media_type = :media_type",
            "#size = :size",
            "#blobs = :blobs",
            "#children = :children",
            "#pushed_at = if_not_exists(#pushed_at, :pushed_at)",
        ];
        let mut remove = Vec::new();
        let mut values = attrs([
            (":media_type", s(&record.media_type)),
            (":size", n(record.size)),
            (":blobs", digest_list(&record.blobs)),
            (":children", digest_list(&record.children)),
            (":pushed_at", n(record.pushed_at)),
        ]);
        match &record.artifact_type {
            Some(t) => {
                set.push("#artifact_type = :artifact_type");
                values.insert(":artifact_type".into(), s(t));
            }
            None => remove.push("#artifact_type"),
        }
        match &record.subject {
            Some(d) => {
                set.push("#subject = :subject");
                values.insert(":subject".into(), s(d.to_string()));
            }
            None => remove.push("#subject"),
        }
        match &record.annotations {
            Some(a) => {
                let json = serde_json::to_string(a)
                    .map_err(|e| MetadataError::Backend(format!("annotations could not be encoded: {e}")))?;
                set.push("#annotations = :annotations");
                values.insert(":annotations".into(), s(json));
            }
            None => remove.push("#annotations"),
        }
        let mut fields = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            fields.push_str(" REMOVE ");
            fields.push_str(&remove.join(", "));
        }
        let (pk, sk) = manifest_key(repo, &digest);
        let size = pk.len()
            + sk.len()
            + 64
            + item_size(values.iter().map(|(k, v)| (k.trim_start_matches(':'), v)))
            + record.artifact_type.as_ref().map_or(0, String::len);
        if size > MAX_ITEM_BYTES - ITEM_HEADROOM {
            return Err(too_large(&format!("manifest record {repo}@{digest}"), size));
        }
        Ok(Self {
            record,
            repo,
            digest,
            blobs: distinct(&record.blobs),
            children: distinct(&record.children),
            tags: distinct(tags.iter().map(Tag::as_str)),
            token: new_token(),
            wall: wall_now(),
            fields,
            field_values: values,
            events: Vec::new(),
        })
    }

    pub(super) fn manifest_key(&self) -> Key {
        manifest_key(self.repo, &self.digest)
    }

    /// Children other than the manifest itself (an index cannot list itself, but a record can).
    pub(super) fn other_children(&self) -> impl Iterator<Item = &'a Digest> + '_ {
        self.children.iter().copied().filter(|c| c.to_string() != self.digest)
    }

    pub(super) fn ref_keys(&self) -> Vec<Key> {
        self.blobs.iter().map(|b| ref_key(self.repo, &self.digest, &b.to_string(), &self.token)).collect()
    }

    pub(super) fn child_keys(&self) -> Vec<Key> {
        self.other_children().map(|c| child_key(self.repo, &c.to_string(), &self.digest, &self.token)).collect()
    }

    /// The manifest update. A fresh put (one that writes its own blob-reference and child items)
    /// records its token; a re-put relies on the items of the put that created the manifest,
    /// so it requires the manifest to still exist.
    pub(super) fn manifest_write(&self, fresh: bool) -> Write {
        let mut expr = format!("{} ADD #version :one", self.fields);
        let mut write = Write::update(self.manifest_key(), String::new()).role(Role::Manifest);
        write.values = self.field_values.clone();
        write = write.value(":one", n(1));
        if fresh {
            expr.push_str(", #tokens :tokens");
            write = write.value(":tokens", AttributeValue::Ss(vec![self.token.clone()]));
        } else {
            write = write.when("attribute_exists(#PK)");
        }
        write.action = Action::Update(expr);
        write
    }

    /// The repository's listing entry for the manifest (written with every put, so a manifest
    /// stored before the listing existed gains its entry when pushed again).
    pub(super) fn index_write(&self) -> Write {
        Write::put(manifest_index_key(self.repo, &self.digest), Item::new())
    }

    /// The repository record and catalog entry, created when missing; the record's `version`
    /// moves, so a concurrent `delete_repository` that read it fails its condition.
    pub(super) fn repository_writes(&self) -> [Write; 2] {
        let now = n(self.record.pushed_at);
        [
            Write::update(repo_key(self.repo), "SET #created_at = if_not_exists(#created_at, :now) ADD #version :one")
                .value(":now", now.clone())
                .value(":one", n(1)),
            Write::update(catalog_key(self.repo), "SET #created_at = if_not_exists(#created_at, :now)")
                .value(":now", now),
        ]
    }

    /// Points `tag` at the manifest and keeps the reverse index a superset of the truth: the
    /// new reverse item is written with the tag; the old one (from the read) is dropped.
    pub(super) fn tag_writes(&self, tag: &str, old: Option<&str>) -> Vec<Write> {
        let mut writes = vec![
            Write::put(
                tag_key(self.repo, tag),
                attrs([("digest", s(&self.digest)), (UPDATED_AT, n(self.record.pushed_at))]),
            ),
            Write::put(tagged_key(self.repo, &self.digest, tag), attrs([("created_at", n(self.wall))])),
        ];
        if let Some(old) = old.filter(|o| *o != self.digest) {
            writes.push(Write::delete(tagged_key(self.repo, old, tag)));
        }
        writes
    }

    pub(super) fn referrer_write(&self) -> Option<Write> {
        let subject = self.record.subject.as_ref()?;
        let mut attributes = Item::new();
        if let Some(t) = &self.record.artifact_type {
            attributes.insert("artifact_type".into(), s(t));
        }
        Some(Write::put(referrer_key(self.repo, &subject.to_string(), &self.digest), attributes))
    }

    /// Per blob: the link must exist (its version moves, so a concurrent `delete_repository`
    /// notices), and the reference is recorded; per child: the child must exist (its version
    /// moves, so a concurrent delete of it notices), and the link is recorded.
    pub(super) fn fresh_reference_writes(&self) -> Vec<Write> {
        let mut writes = Vec::new();
        for blob in &self.blobs {
            let d = blob.to_string();
            writes.push(bump_link(self.repo, blob));
            writes.push(Write::put(
                ref_key(self.repo, &self.digest, &d, &self.token),
                attrs([("created_at", n(self.wall))]),
            ));
        }
        for child in self.other_children() {
            let d = child.to_string();
            writes.push(
                Write::update(manifest_key(self.repo, &d), "ADD #version :one")
                    .when("attribute_exists(#PK)")
                    .value(":one", n(1))
                    .role(Role::Child(child.clone())),
            );
            writes.push(Write::put(
                child_key(self.repo, &d, &self.digest, &self.token),
                attrs([("created_at", n(self.wall))]),
            ));
        }
        writes
    }

    /// A re-put's checks that the blobs and children are still there (the blob links' versions
    /// move, as in a fresh put).
    pub(super) fn recheck_writes(&self) -> Vec<Write> {
        let blobs = self.blobs.iter().map(|b| bump_link(self.repo, b));
        let children = self.other_children().map(|c| {
            Write::check(manifest_key(self.repo, &c.to_string()), "attribute_exists(#PK)").role(Role::Child(c.clone()))
        });
        blobs.chain(children).collect()
    }

    /// The port error for a cancelled transaction whose blob or child condition failed: the
    /// first such blob in the record's order, else the first such child.
    pub(super) fn refusal(&self, reasons: &[Cancel]) -> Option<MetadataError> {
        let failed = |role: &Role| reasons.iter().any(|r| r.code == "ConditionalCheckFailed" && &r.role == role);
        if let Some(b) = self.blobs.iter().find(|b| failed(&Role::Blob((**b).clone()))) {
            return Some(MetadataError::BlobNotInRepository((*b).clone()));
        }
        self.children
            .iter()
            .find(|c| failed(&Role::Child((**c).clone())))
            .map(|c| MetadataError::ChildManifestMissing((*c).clone()))
    }
}

/// The update a put makes to each blob link it relies on: the link must exist, and its
/// `version` moves (a `ConditionCheck` would not change it, and `delete_repository` conditions
/// its deletes on the versions it read).
pub(super) fn bump_link(repo: &str, blob: &Digest) -> Write {
    Write::update(link_key(repo, &blob.to_string()), "ADD #version :one")
        .when("attribute_exists(#PK)")
        .value(":one", n(1))
        .role(Role::Blob(blob.clone()))
}

/// A write guarded by the `version` an item was read at (`None`: read without one).
pub(super) fn at_version(write: Write, version: Option<&str>) -> Write {
    match version {
        Some(v) => write.when("#version = :version").value(":version", n(v)),
        None => write.when("attribute_exists(#PK) AND attribute_not_exists(#version)"),
    }
}

/// An item's `version` as stored (a number's text), if it has one.
pub(super) fn version_of(item: &Item) -> Result<Option<&str>, MetadataError> {
    match item.get("version") {
        None => Ok(None),
        Some(v) => v.as_n().map(|v| Some(v.as_str())).map_err(|_| corrupt("attribute version is not a number")),
    }
}

/// What a put read before writing.
pub(super) struct PutState {
    pub(super) items: HashMap<Key, Item>,
}

impl PutState {
    pub(super) fn has(&self, key: &Key) -> bool {
        self.items.contains_key(key)
    }

    pub(super) fn tag_target(&self, repo: &str, tag: &str) -> Option<&str> {
        self.items.get(&tag_key(repo, tag)).and_then(|item| opt_string(item, "digest").ok().flatten())
    }
}

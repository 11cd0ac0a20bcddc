//! Package version ordering, by each package manager's own rules: a vulnerability is fixed in a
//! version only if the manager itself would call the installed one older.
//!
//! - dpkg (`deb-version(7)`): `[epoch:]upstream[-revision]`; epochs compare as numbers, then
//!   upstream and revision by alternating non-digit runs (`~` before everything, even the end;
//!   letters before other characters) and digit runs (as numbers). A missing revision is `0`.
//! - apk (apk-tools): `digits{.digits}[letter]{_suffix[digits]}[-rN]`; a dot component with
//!   leading zeros ranks below one without (it is a fraction); `_alpha < _beta < _pre < _rc`
//!   rank below the bare version, `_cvs < _svn < _git < _hg < _p` above; `~hash` is ignored.
//! - rpm (`rpmvercmp`): `[epoch:]version[-release]`, each part split into runs of digits (compared
//!   as numbers) and of ASCII letters (compared bytewise), anything else a separator; a digit run
//!   beats a letter run, `~` sorts before everything (even the end), `^` after the end but before
//!   any further run, and the side with runs left over is newer.
//! - Python (PEP 440): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]` with the spellings pip
//!   normalises (`alpha`, `c`, `-1` for a post-release, `_` and `-` separators, a leading `v`);
//!   trailing zero release components are ignored, a dev-release sorts before its pre-releases,
//!   and a local version after its public one.

use std::cmp::Ordering;

/// Which package manager's ordering applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Debian, Ubuntu and distroless images
    Dpkg,
    /// Alpine and Wolfi images
    Apk,
    /// Rocky, AlmaLinux, Amazon Linux, Oracle Linux, RHEL and Fedora images
    Rpm,
    /// Python distributions installed by pip (`*.dist-info`, `*.egg-info`), on any OS
    Pypi,
}

/// Compares two versions the way `ecosystem`'s package manager does.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Ordering {
    match ecosystem {
        Ecosystem::Dpkg => dpkg(a, b),
        Ecosystem::Apk => apk(a, b),
        Ecosystem::Rpm => rpm(a, b),
        Ecosystem::Pypi => pep440(a, b),
    }
}

/// dpkg's ordering (`dpkg --compare-versions`).
pub fn dpkg(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_parts(a);
    let (eb, ub, rb) = dpkg_parts(b);
    ea.cmp(&eb).then_with(|| dpkg_part(ua, ub)).then_with(|| dpkg_part(ra, rb))
}

/// Splits `[epoch:]upstream[-revision]`; a malformed epoch counts as 0.
fn dpkg_parts(v: &str) -> (u64, &str, &str) {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// The weight of one character in a non-digit run: `~` first, then the end, then letters,
/// then everything else.
fn dpkg_weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn dpkg_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // the non-digit run
        while a.get(i).is_some_and(|c| !c.is_ascii_digit()) || b.get(j).is_some_and(|c| !c.is_ascii_digit()) {
            let (wa, wb) = (dpkg_weight(a.get(i).copied()), dpkg_weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        // the digit run, as a number of any length
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let da = a[i.min(a.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b[j.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
        let by_number = da.cmp(&db).then_with(|| a[i..i + da].cmp(&b[j..j + db]));
        if by_number != Ordering::Equal {
            return by_number;
        }
        i += da;
        j += db;
    }
    Ordering::Equal
}

/// What the next part of an apk version is; the order matters (see [`apk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ApkToken {
    Invalid,
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    Revision,
    End,
}

const APK_PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const APK_POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

/// A cursor over an apk version string.
struct ApkCursor<'a> {
    rest: &'a [u8],
    token: ApkToken,
}

impl<'a> ApkCursor<'a> {
    fn new(v: &'a str) -> Self {
        // the `~hash` part orders nothing
        let v = v.trim().split('~').next().unwrap_or_default();
        ApkCursor { rest: v.as_bytes(), token: if v.is_empty() { ApkToken::End } else { ApkToken::Digit } }
    }

    /// Reads the value of the current token and moves to the next one.
    fn value(&mut self) -> i64 {
        if self.rest.is_empty() {
            self.token = ApkToken::End;
            return 0;
        }
        let mut used = 0;
        let mut value: i64 = 0;
        let mut digits_follow = false;
        match self.token {
            ApkToken::DigitOrZero
                if self.rest[0] == b'0' && self.rest.iter().find(|c| **c != b'0').is_some_and(u8::is_ascii_digit) =>
            {
                // a component with leading zeros (`.01`) is a fraction: it ranks below any
                // without, and the digits after the zeros are a token of their own
                used = self.rest.iter().take_while(|c| **c == b'0').count();
                value = -(used as i64);
                digits_follow = true;
            }
            ApkToken::DigitOrZero | ApkToken::Digit | ApkToken::SuffixNumber | ApkToken::Revision => {
                for c in self.rest.iter().take_while(|c| c.is_ascii_digit()) {
                    value = value.saturating_mul(10).saturating_add(i64::from(c - b'0'));
                    used += 1;
                }
            }
            ApkToken::Letter => {
                value = i64::from(self.rest[0]);
                used = 1;
            }
            ApkToken::Suffix => {
                if let Some(i) = APK_PRE.iter().position(|s| self.rest.starts_with(s.as_bytes())) {
                    value = i as i64 - APK_PRE.len() as i64;
                    used = APK_PRE[i].len();
                } else if let Some(i) = APK_POST.iter().position(|s| self.rest.starts_with(s.as_bytes())) {
                    value = i as i64;
                    used = APK_POST[i].len();
                } else {
                    self.token = ApkToken::Invalid;
                    return -1;
                }
            }
            ApkToken::Invalid | ApkToken::End => {
                self.token = ApkToken::Invalid;
                return -1;
            }
        }
        self.rest = &self.rest[used..];
        if self.rest.is_empty() {
            self.token = ApkToken::End;
        } else if digits_follow {
            self.token = ApkToken::Digit;
        } else {
            self.advance();
        }
        value
    }

    /// Whether the suffix ahead (`_rc1`) marks a pre-release.
    fn suffix_is_pre_release(&self) -> bool {
        APK_PRE.iter().any(|s| self.rest.starts_with(s.as_bytes()))
    }

    /// Decides what the next token is from the separator (or character class) ahead.
    fn advance(&mut self) {
        let Some(&c) = self.rest.first() else {
            self.token = ApkToken::End;
            return;
        };
        let prev = self.token;
        let next = if matches!(prev, ApkToken::Digit | ApkToken::DigitOrZero) && c.is_ascii_lowercase() {
            ApkToken::Letter
        } else if prev == ApkToken::Letter && c.is_ascii_digit() {
            ApkToken::Digit
        } else if prev == ApkToken::Suffix && c.is_ascii_digit() {
            ApkToken::SuffixNumber
        } else {
            let (token, skip) = match c {
                b'.' => (ApkToken::DigitOrZero, 1),
                b'_' => (ApkToken::Suffix, 1),
                b'-' if self.rest.get(1) == Some(&b'r') => (ApkToken::Revision, 2),
                _ => (ApkToken::Invalid, 1),
            };
            self.rest = &self.rest[skip.min(self.rest.len())..];
            token
        };
        // tokens only go forward (a digit after a letter, or a suffix after a suffix number, aside)
        let allowed_back = matches!(
            (next, prev),
            (ApkToken::DigitOrZero, ApkToken::Digit)
                | (ApkToken::Suffix, ApkToken::SuffixNumber)
                | (ApkToken::Digit, ApkToken::Letter)
        );
        self.token = if next < prev && !allowed_back { ApkToken::Invalid } else { next };
    }
}

/// apk-tools' ordering (`apk version -t`).
pub fn apk(a: &str, b: &str) -> Ordering {
    let (mut ca, mut cb) = (ApkCursor::new(a), ApkCursor::new(b));
    let (mut va, mut vb) = (0, 0);
    while ca.token == cb.token && !matches!(ca.token, ApkToken::End | ApkToken::Invalid) && va == vb {
        va = ca.value();
        vb = cb.value();
    }
    if va != vb {
        return va.cmp(&vb);
    }
    if ca.token == cb.token {
        return Ordering::Equal;
    }
    // equal so far: the longer one is newer unless what follows is a pre-release suffix
    if ca.token == ApkToken::Suffix && ca.suffix_is_pre_release() {
        return Ordering::Less;
    }
    if cb.token == ApkToken::Suffix && cb.suffix_is_pre_release() {
        return Ordering::Greater;
    }
    cb.token.cmp(&ca.token)
}

/// rpm's ordering of whole `[epoch:]version[-release]` strings (`rpm.vercmp`, `rpmverCmp`): a
/// missing epoch is `0`, and a missing release is older than any present one (even `-` or `-~`).
pub fn rpm(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = rpm_parts(a);
    let (eb, vb, rb) = rpm_parts(b);
    rpmvercmp(ea, eb).then_with(|| rpmvercmp(va, vb)).then_with(|| match (ra, rb) {
        (Some(x), Some(y)) => rpmvercmp(x, y),
        (x, y) => x.is_some().cmp(&y.is_some()),
    })
}

/// `[epoch:]version[-release]`: the epoch is the leading digits before a `:`, the release what
/// follows the last `-`.
fn rpm_parts(evr: &str) -> (&str, &str, Option<&str>) {
    let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = match evr[digits..].strip_prefix(':') {
        Some(rest) if digits > 0 => (&evr[..digits], rest),
        Some(rest) => ("0", rest),
        None => ("0", evr),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, Some(release)),
        None => (epoch, rest, None),
    }
}

/// rpm's `rpmvercmp` of one part.
fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    while !one.is_empty() || !two.is_empty() {
        one = &one[one.iter().take_while(|c| separator(c)).count()..];
        two = &two[two.iter().take_while(|c| separator(c)).count()..];
        let (c1, c2) = (one.first().copied(), two.first().copied());
        if c1 == Some(b'~') || c2 == Some(b'~') {
            if c1 != Some(b'~') {
                return Ordering::Greater;
            }
            if c2 != Some(b'~') {
                return Ordering::Less;
            }
            (one, two) = (&one[1..], &two[1..]);
            continue;
        }
        if c1 == Some(b'^') || c2 == Some(b'^') {
            match (c1, c2) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            (one, two) = (&one[1..], &two[1..]);
            continue;
        }
        if one.is_empty() || two.is_empty() {
            break;
        }
        let numeric = one[0].is_ascii_digit();
        let run = |s: &[u8]| {
            if numeric {
                s.iter().take_while(|c| c.is_ascii_digit()).count()
            } else {
                s.iter().take_while(|c| c.is_ascii_alphabetic()).count()
            }
        };
        let (n1, n2) = (run(one), run(two));
        // a digit run against a letter run: the digits are newer
        if n2 == 0 {
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let (mut s1, mut s2) = (&one[..n1], &two[..n2]);
        if numeric {
            s1 = &s1[s1.iter().take_while(|c| **c == b'0').count()..];
            s2 = &s2[s2.iter().take_while(|c| **c == b'0').count()..];
            match s1.len().cmp(&s2.len()) {
                Ordering::Equal => {}
                longer => return longer,
            }
        }
        match s1.cmp(s2) {
            Ordering::Equal => {}
            other => return other,
        }
        (one, two) = (&one[n1..], &two[n2..]);
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// PEP 440's ordering (Python's `packaging.version`); a version that is not PEP 440 compares
/// as text, after every valid one.
pub fn pep440(a: &str, b: &str) -> Ordering {
    match (Pep440::parse(a), Pep440::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Where a missing part sorts, around the present ones.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Min,
    Is(u64, u64),
    Max,
}

/// A local-version segment: numbers sort after words.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    Word(String),
    Number(u64),
}

/// A PEP 440 version as its sort key (fields in comparison order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    pre: Bound,
    post: Bound,
    dev: Bound,
    local: Option<Vec<LocalPart>>,
}

impl Pep440 {
    fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let (public, local) = match lower.split_once('+') {
            Some((p, l)) => (p, Some(l)),
            None => (lower.as_str(), None),
        };
        let mut rest = public.strip_prefix('v').unwrap_or(public);
        let number = |s: &str| -> Option<(u64, usize)> {
            let n = s.bytes().take_while(u8::is_ascii_digit).count();
            (n > 0).then(|| s[..n].parse().ok().map(|v| (v, n))).flatten()
        };
        let mut epoch = 0;
        if let Some((e, n)) = number(rest) {
            if rest[n..].starts_with('!') {
                epoch = e;
                rest = &rest[n + 1..];
            }
        }
        let mut release = Vec::new();
        loop {
            let (v, n) = number(rest)?;
            release.push(v);
            rest = &rest[n..];
            match rest.strip_prefix('.') {
                Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
                _ => break,
            }
        }
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        // `[sep]word[sep][digits]` with the longest word of `words` that matches: (word, number, rest)
        let tagged = |s: &str, words: &[&str]| -> Option<(String, u64, String)> {
            let body = s.strip_prefix(['.', '-', '_']).unwrap_or(s);
            let word = words.iter().filter(|w| body.starts_with(**w)).max_by_key(|w| w.len())?;
            let after_word = &body[word.len()..];
            let after_sep = after_word.strip_prefix(['.', '-', '_']).unwrap_or(after_word);
            Some(match number(after_sep) {
                Some((n, used)) => (word.to_string(), n, after_sep[used..].to_string()),
                // no number: it is 0 (`1.0a.` is `1.0a0`)
                None => (word.to_string(), 0, after_sep.to_string()),
            })
        };
        let mut owned = rest.to_string();
        let mut pre = None;
        if let Some((word, n, r)) = tagged(&owned, &["a", "alpha", "b", "beta", "c", "rc", "pre", "preview"]) {
            let rank = match word.as_str() {
                "a" | "alpha" => 0,
                "b" | "beta" => 1,
                _ => 2,
            };
            pre = Some((rank, n));
            owned = r;
        }
        let mut post = None;
        if let Some((n, used)) = owned.strip_prefix('-').and_then(number) {
            post = Some(n);
            owned = owned[1 + used..].to_string();
        } else if let Some((_, n, r)) = tagged(&owned, &["post", "rev", "r"]) {
            post = Some(n);
            owned = r;
        }
        let mut dev = None;
        if let Some((_, n, r)) = tagged(&owned, &["dev"]) {
            dev = Some(n);
            owned = r;
        }
        if !owned.is_empty() {
            return None;
        }
        let local = match local {
            Some(l) => {
                let parts: Vec<LocalPart> = l
                    .split(['.', '-', '_'])
                    .map(|p| match p.parse::<u64>() {
                        Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => Some(LocalPart::Number(n)),
                        _ if !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                            Some(LocalPart::Word(p.to_string()))
                        }
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                Some(parts)
            }
            None => None,
        };
        let pre_key = match (pre, post, dev) {
            (None, None, Some(_)) => Bound::Min,
            (None, ..) => Bound::Max,
            (Some((rank, n)), ..) => Bound::Is(rank, n),
        };
        Some(Self {
            epoch,
            release,
            pre: pre_key,
            post: post.map_or(Bound::Min, |n| Bound::Is(0, n)),
            dev: dev.map_or(Bound::Max, |n| Bound::Is(0, n)),
            local,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn dpkg_orders_as_dpkg_compare_versions() {
        let cases = [
            ("1.0~rc1", "1.0", Less),
            ("1.0-1~bpo12+1", "1.0-1", Less),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.001", "1.1", Equal),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1", Less),
            ("1.2.3", "1.2.3a", Less),
            ("1.2.3a", "1.2.3+b1", Less),
            ("1.0~~", "1.0~", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("1.10", "1.9", Greater),
            ("7.88.1-10+deb12u5", "7.88.1-10+deb12u5", Equal),
            ("1.2-3-4", "1.2-3", Greater),
            ("10:1", "9:99", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(dpkg(a, b), want, "{a} vs {b}");
            assert_eq!(dpkg(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Each expectation is what `rpm --eval "%{lua: print(rpm.vercmp(a, b))}"` (Debian's rpm
    /// 4.18) printed.
    #[test]
    fn rpm_orders_as_rpm_vercmp() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("5.5p1", "5.5", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1.0-1", "1.0", Greater),
            ("1.0", "1.0-", Less),
            ("1.0", "1.0-~", Less),
            ("1.0-~", "1.0-", Less),
            ("3.0.7-24.el9", "3.0.7-25.el9_3", Less),
            ("1:3.0.7-24.el9", "3.0.7-25.el9_3", Greater),
            ("1.0-1.el8", "1.0-1.el8_9", Less),
            ("a+", "a_", Equal),
            ("1.001", "1.1", Equal),
            ("1.0.a", "1.0.1", Less),
            ("2.5.0-1.amzn2.0.1", "2.5.0-1.amzn2", Greater),
            ("4.4.20-4.el8_6", "4.4.20-1.el8", Greater),
            ("fc4", "fc.4", Equal),
            ("FC5", "fc4", Less),
            ("2a", "2.0", Less),
            ("1.0", "1.fc4", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpm(a, b), want, "{a} vs {b}");
            assert_eq!(rpm(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// Each expectation is what Python's `packaging.version.Version` (the pip venv's) says.
    #[test]
    fn python_orders_as_pep_440() {
        let cases = [
            ("1.0", "1.0.0", Equal),
            ("1.0a1", "1.0", Less),
            ("1.0.dev1", "1.0a1", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0.post1", "1.0", Greater),
            ("1.0.post1.dev1", "1.0.post1", Less),
            ("1!0.1", "2.0", Greater),
            ("1.0+local", "1.0", Greater),
            ("1.0+abc.1", "1.0+abc.2", Less),
            ("1.0+1", "1.0+abc", Greater),
            ("2.31.0", "2.4.0", Greater),
            ("1.0b2", "1.0rc1", Less),
            ("1.0alpha1", "1.0a1", Equal),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0c1", "1.0rc1", Equal),
            ("v1.0", "1.0", Equal),
            ("1.0.0a0", "1.0.dev0", Greater),
            ("1.26.18", "1.26.5", Greater),
            ("0.0.1", "0.0.1.post0", Less),
            ("1.0.dev1", "1.0.dev2", Less),
            ("1.0a1.dev1", "1.0a1", Less),
            ("1.0rc1.post1", "1.0rc1", Greater),
            ("1.0rc1.post1", "1.0", Less),
            ("1.0.dev0", "1.0+local", Less),
            ("3.0.0", "3.0.0rc2", Greater),
            ("2023.7.22", "2024.2.2", Less),
            ("1.0_post_1", "1.0.post1", Equal),
            ("1.0-dev-1", "1.0.dev1", Equal),
            ("1.0a.", "1.0a0", Equal),
            ("1.0.post.", "1.0.post0", Equal),
            ("1.0a..post1", "1.0a0.post1", Equal),
            ("1.0a", "1.0a0", Equal),
            ("not a version", "1.0", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(pep440(a, b), want, "{a} vs {b}");
            assert_eq!(pep440(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn apk_orders_as_apk_tools() {
        let cases = [
            ("1.0", "1.0.1", Less),
            ("1.0_rc1", "1.0", Less),
            ("1.0_alpha", "1.0_beta", Less),
            ("1.0", "1.0_p1", Less),
            ("1.0-r1", "1.0-r2", Less),
            ("1.0-r10", "1.0-r9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0b", Less),
            ("1.01", "1.1", Less),
            ("3.1.4-r5", "3.1.4-r5", Equal),
            ("3.1.4-r5", "3.1.6-r0", Less),
            ("1.2.3_git20230101", "1.2.3", Greater),
            ("1.2.3_rc2", "1.2.3_rc10", Less),
            ("2.10", "2.9", Greater),
            ("1.0~abc123", "1.0", Equal),
            ("1.36.1-r15", "1.36.1-r29", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(apk(a, b), want, "{a} vs {b}");
            assert_eq!(apk(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}

//! Image and tag patterns (NCR's replication-filter table): `*`, `**`, `?`, `{a,b}`.
//!
//! Semantics (the NHN Container Registry guide's filter table, Harbor's doublestar selector):
//!
//! - `*` matches any run of characters (possibly empty) except `/`;
//! - `**` matches any run of characters including `/`; when it is a whole path segment followed by
//!   `/` (`a/**/b`, `**/b`) the `**/` may also match nothing, so `a/**/b` matches `a/b` as well as
//!   `a/x/y/b`;
//! - `?` matches exactly one character except `/`;
//! - `{a,b,c}` matches any one of its comma-separated branches; branches may contain wildcards and
//!   nested braces, and may be empty (`{a,}` matches `a` or nothing), but `{}` is refused;
//! - a `,` outside braces and every other character is literal (there is no escape character);
//! - the whole text must match, and the empty pattern matches everything.
//!
//! Patterns compile to a small NFA that is simulated over the text one character at a time, so
//! matching costs at most `O(text length × pattern length)` with no backtracking.

/// The longest pattern accepted, in bytes (keeps compiled automata and matching cost small).
pub const MAX_PATTERN_BYTES: usize = 256;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is malformed.
    #[error("invalid pattern {pattern:?}: {why}")]
    Invalid {
        /// the pattern
        pattern: String,
        /// what is wrong
        why: String,
    },
}

/// A compiled glob pattern; the empty pattern matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    /// NFA states; empty for the empty pattern.
    states: Vec<State>,
    /// Index of the start state in `states`.
    start: usize,
}

/// One parsed element of a pattern.
#[derive(Debug)]
enum Node {
    /// A literal character.
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run without `/`.
    Star,
    /// `**`: any run, `/` included.
    DoubleStar,
    /// `**/` as a whole path segment: nothing, or any run ending in `/`.
    DirStar,
    /// `{a,b}`: one of the branches.
    Alt(Vec<Vec<Node>>),
}

/// One NFA state; `next` fields are indices into [`Pattern::states`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Consumes exactly this character.
    Char(char, usize),
    /// Consumes one character other than `/`.
    One(usize),
    /// Consumes any number of characters (not `/` unless `slash`) staying here, or moves on to `next`.
    Star { slash: bool, next: usize },
    /// Moves on to any of these states without consuming.
    Split(Vec<usize>),
    /// The whole pattern has matched.
    Match,
}

/// An open `{` while parsing.
struct Frame {
    /// Byte offset of the `{`, for error messages.
    open_at: usize,
    /// Branches finished by a `,`.
    branches: Vec<Vec<Node>>,
    /// The sequence the `{` belongs to.
    outer: Vec<Node>,
}

impl Pattern {
    /// Compiles a pattern.
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        let invalid = |why: String| PatternError::Invalid { pattern: source.to_string(), why };
        if source.len() > MAX_PATTERN_BYTES {
            return Err(invalid(format!("pattern is {} bytes, the limit is {MAX_PATTERN_BYTES}", source.len())));
        }
        if let Some((at, c)) = source.char_indices().find(|(_, c)| c.is_control()) {
            return Err(invalid(format!("control character U+{:04X} at byte {at}", u32::from(c))));
        }
        if source.is_empty() {
            return Ok(Pattern { source: String::new(), states: Vec::new(), start: 0 });
        }
        let nodes = parse_nodes(source).map_err(invalid)?;
        let mut states = vec![State::Match];
        let start = compile_seq(&mut states, &nodes, 0);
        Ok(Pattern { source: source.to_string(), states, start })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if self.states.is_empty() {
            return true;
        }
        let n = self.states.len();
        // `seen[s] == generation` marks `s` as already in the set being built.
        let mut seen = vec![0usize; n];
        let mut generation = 1;
        let mut current = Vec::with_capacity(n);
        let mut next = Vec::with_capacity(n);
        let mut stack = Vec::new();
        self.add(self.start, &mut current, &mut seen, generation, &mut stack);
        for c in text.chars() {
            if current.is_empty() {
                return false;
            }
            generation += 1;
            next.clear();
            for &s in &current {
                let to = match self.states.get(s) {
                    Some(State::Char(want, to)) if *want == c => *to,
                    Some(State::One(to)) if c != '/' => *to,
                    Some(State::Star { slash, .. }) if *slash || c != '/' => s,
                    _ => continue,
                };
                self.add(to, &mut next, &mut seen, generation, &mut stack);
            }
            std::mem::swap(&mut current, &mut next);
        }
        current.iter().any(|&s| matches!(self.states.get(s), Some(State::Match)))
    }

    /// Adds `state` and everything reachable from it without consuming input to `set`.
    fn add(&self, state: usize, set: &mut Vec<usize>, seen: &mut [usize], generation: usize, stack: &mut Vec<usize>) {
        stack.push(state);
        while let Some(s) = stack.pop() {
            match seen.get_mut(s) {
                Some(mark) if *mark != generation => *mark = generation,
                _ => continue,
            }
            match self.states.get(s) {
                Some(State::Split(targets)) => stack.extend(targets.iter().copied()),
                Some(State::Star { next, .. }) => {
                    set.push(s);
                    stack.push(*next);
                }
                Some(_) => set.push(s),
                None => {}
            }
        }
    }
}

/// Parses the pattern text into nodes; the error is the reason only.
fn parse_nodes(source: &str) -> Result<Vec<Node>, String> {
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut seq: Vec<Node> = Vec::new();
    let mut i = 0;
    while let Some(&(at, c)) = chars.get(i) {
        i += 1;
        match c {
            '*' => {
                if matches!(chars.get(i), Some((_, '*'))) {
                    i += 1;
                    let segment_start = at == 0 || source.as_bytes().get(at - 1) == Some(&b'/');
                    if segment_start && matches!(chars.get(i), Some((_, '/'))) {
                        i += 1;
                        seq.push(Node::DirStar);
                    } else {
                        seq.push(Node::DoubleStar);
                    }
                } else {
                    seq.push(Node::Star);
                }
            }
            '?' => seq.push(Node::One),
            '{' => {
                stack.push(Frame { open_at: at, branches: Vec::new(), outer: std::mem::take(&mut seq) });
            }
            ',' if !stack.is_empty() => {
                if let Some(frame) = stack.last_mut() {
                    frame.branches.push(std::mem::take(&mut seq));
                }
            }
            '}' => {
                let Some(mut frame) = stack.pop() else {
                    return Err(format!("unbalanced '}}' at byte {at} has no matching '{{'"));
                };
                if frame.branches.is_empty() && seq.is_empty() {
                    return Err(format!("empty alternation '{{}}' at byte {}", frame.open_at));
                }
                frame.branches.push(std::mem::take(&mut seq));
                seq = frame.outer;
                seq.push(Node::Alt(frame.branches));
            }
            _ => seq.push(Node::Lit(c)),
        }
    }
    if let Some(frame) = stack.last() {
        return Err(format!("unbalanced '{{' at byte {} has no matching '}}'", frame.open_at));
    }
    Ok(seq)
}

/// Compiles `seq` so that it continues to state `next`; returns the sequence's first state.
fn compile_seq(states: &mut Vec<State>, seq: &[Node], next: usize) -> usize {
    let mut next = next;
    for node in seq.iter().rev() {
        next = compile_node(states, node, next);
    }
    next
}

/// Compiles one node continuing to `next`; returns its first state.
fn compile_node(states: &mut Vec<State>, node: &Node, next: usize) -> usize {
    let state = match node {
        Node::Lit(c) => State::Char(*c, next),
        Node::One => State::One(next),
        Node::Star => State::Star { slash: false, next },
        Node::DoubleStar => State::Star { slash: true, next },
        Node::DirStar => {
            let slash = push(states, State::Char('/', next));
            let any = push(states, State::Star { slash: true, next: slash });
            State::Split(vec![next, any])
        }
        Node::Alt(branches) => {
            let starts = branches.iter().map(|b| compile_seq(states, b, next)).collect();
            State::Split(starts)
        }
    };
    push(states, state)
}

/// Appends a state and returns its index.
fn push(states: &mut Vec<State>, state: State) -> usize {
    states.push(state);
    states.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, text: &str, want: bool) {
        let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern:?} refused: {e}"));
        assert_eq!(p.matches(text), want, "pattern {pattern:?} against {text:?}");
    }

    /// The NCR guide's filter table, row for row.
    #[test]
    fn guide_table() {
        let rows: &[(&str, &str, bool)] = &[
            ("*", "hello-world", true),
            ("*", "path/hello-world", false),
            ("path/*", "path/hello-world", true),
            ("path/*", "path/my/hello-world", false),
            ("path/**", "path/hello-world", true),
            ("path/**", "path/my/hello-world", true),
            ("**", "hello-world", true),
            ("**", "path/hello-world", true),
            ("**", "path/my/hello-world", true),
            ("{path,ncr}/**", "path/hello-world", true),
            ("{path,ncr}/**", "ncr/hello-world", true),
            ("{path,ncr}/**", "nhn/hello-world", false),
            ("1.?", "1.0", true),
            ("1.?", "1.01", false),
        ];
        for &(pattern, text, want) in rows {
            check(pattern, text, want);
        }
    }

    #[test]
    fn edge_cases() {
        let rows: &[(&str, &str, bool)] = &[
            // the empty pattern matches everything
            ("", "", true),
            ("", "anything/at/all", true),
            // whole-text matching and literals
            ("latest", "latest", true),
            ("latest", "latest2", false),
            ("latest", "xlatest", false),
            ("a,b", "a,b", true),
            ("a.b", "axb", false),
            // `*` never crosses `/`, matches empty
            ("*", "", true),
            ("v*", "v", true),
            ("v*", "v1.2.3", true),
            ("a*c", "a/c", false),
            ("*/*", "a/b", true),
            ("*/*", "a/b/c", false),
            ("*-dev", "feature-x-dev", true),
            // `?` is exactly one non-`/` character
            ("?", "", false),
            ("?", "/", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("??", "ab", true),
            ("??", "abc", false),
            // `**` crosses slashes
            ("**", "", true),
            ("a**", "a/b/c", true),
            ("**/hello", "path/my/hello", true),
            ("**/hello", "hello", true),
            ("**hello", "path/hello", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("a/**/b", "ab", false),
            ("a/**/b", "b/x/b", false),
            ("path/**", "path/", true),
            ("path/**", "path", false),
            ("path/**", "other/x", false),
            ("x**/b", "x/b", true),
            ("x**/b", "xb", false),
            // braces, with wildcards and nesting inside
            ("{a,b}", "a", true),
            ("{a,b}", "b", true),
            ("{a,b}", "ab", false),
            ("{a,b}", "", false),
            ("{v*,release-?}", "v1.0", true),
            ("{v*,release-?}", "release-1", true),
            ("{v*,release-?}", "release-10", false),
            ("{v*,x}", "v1/2", false),
            ("{**/dev,prod}", "team/app/dev", true),
            ("{**/dev,prod}", "prod", true),
            ("{**/dev,prod}", "team/prod", false),
            ("img-{a,b}-{x,y}", "img-b-x", true),
            ("img-{a,b}-{x,y}", "img-c-x", false),
            ("{a,{b,c}d}", "cd", true),
            ("{a,{b,c}d}", "a", true),
            ("{a,{b,c}d}", "c", false),
            ("v{,-rc}", "v", true),
            ("v{,-rc}", "v-rc", true),
            ("tag,{x}", "tag,x", true),
            // non-ASCII characters are single characters
            ("caf?", "café", true),
        ];
        for &(pattern, text, want) in rows {
            check(pattern, text, want);
        }
    }

    #[test]
    fn invalid_patterns() {
        let too_long = "a".repeat(MAX_PATTERN_BYTES + 1);
        let rows: &[(&str, &str)] = &[
            ("{a,b", "unbalanced '{' at byte 0 has no matching '}'"),
            ("x{a,{b}", "unbalanced '{' at byte 1 has no matching '}'"),
            ("a}", "unbalanced '}' at byte 1 has no matching '{'"),
            ("{a}}", "unbalanced '}' at byte 3 has no matching '{'"),
            ("x{}", "empty alternation '{}' at byte 1"),
            ("a\tb", "control character U+0009 at byte 1"),
            ("a\nb", "control character U+000A at byte 1"),
            ("\u{7f}", "control character U+007F at byte 0"),
            (&too_long, "pattern is 257 bytes, the limit is 256"),
        ];
        for &(pattern, why) in rows {
            let want = PatternError::Invalid { pattern: pattern.to_string(), why: why.to_string() };
            assert_eq!(Pattern::parse(pattern), Err(want.clone()), "pattern {pattern:?}");
            assert!(want.to_string().contains(why));
        }
        assert!(Pattern::parse(&"a".repeat(MAX_PATTERN_BYTES)).is_ok());
    }

    #[test]
    fn as_str_round_trips() {
        for source in ["", "**", "{path,ncr}/**", "1.?"] {
            assert_eq!(Pattern::parse(source).map(|p| p.as_str().to_string()), Ok(source.to_string()));
        }
    }

    #[test]
    fn no_exponential_backtracking() {
        let text = "a".repeat(10_000);
        let started = std::time::Instant::now();
        check("*a*a*a*a*b", &text, false);
        check("**a**a**a**a**b", &text, false);
        check("{*a,a*}{*a,a*}{*a,a*}{*a,a*}b", &text, false);
        check("*a*a*a*a*a", &text, true);
        let slashes = "a/".repeat(5_000);
        check("**/**/**/**/b", &slashes, false);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}

//! Size and nesting-depth limits on YAML and JSON input, checked in one linear pass before a
//! parser sees the text.
//!
//! Why a pre-pass: `serde_yaml` (libyaml underneath) reads a whole document into events before
//! its own recursion limit applies, and libyaml's scanner re-examines every open flow level
//! (`[`, `{`) for each token, so a document of nested flow collections costs time quadratic in
//! its size: 80 KB of `{a: {a: ...}}` takes seconds, 200 KB takes tens of seconds. The scan
//! here counts nesting the way the parser would (flow brackets, block indentation, sequence
//! dashes) while skipping quoted scalars, block scalars and comments, and stops at the first
//! level over the limit, so a hostile input is refused in time linear in its length.
//!
//! The counts are those of the document's structure; a plain multi-line scalar whose
//! continuation lines start with `[` or `{`, or indent further and further, can be counted a
//! level or two deeper than the parser would see it, which only matters next to the limit
//! (default 100 levels, below `serde_yaml`'s and `serde_json`'s own 128).
//!
//! JSON is checked the same way (strings skipped, brackets counted); `serde_json` is linear
//! already, the check gives one error shape for both.

use serde::de::DeserializeOwned;

/// kube-apiserver's limit on a request body (`MaxRequestBodyBytes`, 3 MiB).
pub const API_SERVER_MAX_BYTES: usize = 3 * 1024 * 1024;

/// The default nesting limit: deeper than any manifest (a CRD schema nests about 2 levels per
/// object level), below the 128 levels at which `serde_yaml` and `serde_json` give up.
pub const DEFAULT_MAX_DEPTH: usize = 100;

/// How much input to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of collections (a scalar at the top level is depth 0, `{a: 1}` is 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: API_SERVER_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl Limits {
    /// The default depth with another size limit.
    pub const fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Larger than [`Limits::max_bytes`].
    #[error("the input is {} ({size} bytes), over the limit of {}", human(*size), human(*limit))]
    TooLarge { size: usize, limit: usize },
    /// Nested deeper than [`Limits::max_depth`]; `line` and `column` (1-based) point at the
    /// opening of the first level over the limit.
    #[error("the input nests more than {limit} levels deep (line {line}, column {column})")]
    TooDeep {
        limit: usize,
        line: usize,
        column: usize,
    },
}

fn human(bytes: usize) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// A refused or unparsable input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Refuses a length over the size limit.
pub fn check_size(len: usize, limits: &Limits) -> Result<(), LimitError> {
    if len > limits.max_bytes {
        return Err(LimitError::TooLarge {
            size: len,
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

/// Checks the size, then parses one YAML document.
pub fn from_yaml_str<T: DeserializeOwned>(text: &str, limits: &Limits) -> Result<T, Error> {
    check_yaml(text, limits)?;
    Ok(serde_yaml::from_str(text)?)
}

/// Checks the size and depth, then parses JSON.
pub fn from_json_slice<T: DeserializeOwned>(input: &[u8], limits: &Limits) -> Result<T, Error> {
    check_json(input, limits)?;
    Ok(serde_json::from_slice(input)?)
}

/// Checks a JSON text: size, then nesting depth (strings skipped), in one pass.
pub fn check_json(input: &[u8], limits: &Limits) -> Result<(), LimitError> {
    check_size(input.len(), limits)?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &c) in input.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limits.max_depth {
                    let (line, column) = position(input, at);
                    return Err(LimitError::TooDeep {
                        limit: limits.max_depth,
                        line,
                        column,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// 1-based line and column (in characters) of byte `at`.
fn position(input: &[u8], at: usize) -> (usize, usize) {
    let before = &input[..at.min(input.len())];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, column)
}

/// Checks a YAML text (one document or a stream): size, then nesting depth, in one pass.
pub fn check_yaml(text: &str, limits: &Limits) -> Result<(), LimitError> {
    check_size(text.len(), limits)?;
    let mut scan = YamlScan {
        max: limits.max_depth,
        flow: 0,
        quote: None,
        block_scalar: None,
        levels: Vec::new(),
        at_node_start: true,
    };
    let mut offset = 0;
    for (n, raw) in text.as_bytes().split(|&c| c == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        scan.line(line).map_err(|col| {
            let (_, column) = position(text.as_bytes(), offset + col);
            LimitError::TooDeep {
                limit: limits.max_depth,
                line: n + 1,
                column,
            }
        })?;
        offset += raw.len() + 1;
    }
    Ok(())
}

/// The scanner's state between lines.
struct YamlScan {
    max: usize,
    /// Open flow collections.
    flow: usize,
    /// Inside a quoted scalar that continues on the next line (`"` or `'`).
    quote: Option<u8>,
    /// Inside a block scalar (`|`, `>`): its lines are those indented more than this column.
    block_scalar: Option<isize>,
    /// Open block collections, innermost last: `2 * column` for a mapping, `2 * column + 1`
    /// for a sequence entry (a sequence may sit at its parent key's column).
    levels: Vec<usize>,
    /// The next character may begin a node (so `[`, `{`, quotes and `|` are indicators).
    at_node_start: bool,
}

fn blank_or_end(c: Option<&u8>) -> bool {
    matches!(c, None | Some(b' ' | b'\t'))
}

fn is_marker(line: &[u8], marker: &[u8; 3]) -> bool {
    line.starts_with(marker) && blank_or_end(line.get(3))
}

impl YamlScan {
    fn depth(&self) -> usize {
        self.levels.len() + self.flow
    }

    fn reset(&mut self) {
        self.flow = 0;
        self.quote = None;
        self.block_scalar = None;
        self.levels.clear();
        self.at_node_start = true;
    }

    /// Opens a block collection at `level` unless it is already open; `Err(column)` past the
    /// limit.
    fn push(&mut self, level: usize, column: usize) -> Result<(), usize> {
        if self.levels.last().is_none_or(|&top| top < level) {
            self.levels.push(level);
            if self.depth() > self.max {
                return Err(column);
            }
        }
        Ok(())
    }

    /// Scans one line (without its newline); `Err(byte column)` where the limit is passed.
    fn line(&mut self, line: &[u8]) -> Result<(), usize> {
        let indent = line.iter().take_while(|&&c| c == b' ').count();
        let rest = &line[indent..];
        let blank = rest.iter().all(|&c| c == b' ' || c == b'\t');
        let mut start = 0;
        if self.quote.is_none() && (is_marker(line, b"---") || is_marker(line, b"...")) {
            // A document boundary ends whatever was open.
            self.reset();
            if line.starts_with(b"...") {
                return Ok(());
            }
            start = 3;
        } else if let Some(threshold) = self.block_scalar {
            if blank || indent as isize > threshold {
                return Ok(());
            }
            self.block_scalar = None;
        }
        if start == 0 && self.quote.is_none() && self.flow == 0 {
            if blank || rest.first() == Some(&b'#') || (indent == 0 && rest.first() == Some(&b'%'))
            {
                return Ok(());
            }
            while self.levels.last().is_some_and(|&top| top > 2 * indent) {
                self.levels.pop();
            }
            self.at_node_start = true;
            start = indent;
        }
        let mut i = start;
        let mut prev_blank = true;
        // Block context: where the plain or quoted scalar being read began (a key if a `: `
        // follows), and the innermost node that began on this line.
        let mut token_col: Option<usize> = None;
        let mut node_col: Option<usize> = None;
        while i < line.len() {
            let c = line[i];
            if let Some(q) = self.quote {
                match (q, c) {
                    (b'"', b'\\') => {
                        i += 2;
                        continue;
                    }
                    (b'\'', b'\'') if line.get(i + 1) == Some(&b'\'') => {
                        i += 2;
                        continue;
                    }
                    (b'"', b'"') | (b'\'', b'\'') => self.quote = None,
                    _ => {}
                }
                prev_blank = false;
                i += 1;
                continue;
            }
            if c == b' ' || c == b'\t' {
                prev_blank = true;
                i += 1;
                continue;
            }
            if c == b'#' && prev_blank {
                break;
            }
            prev_blank = false;
            if self.flow > 0 {
                match c {
                    b'[' | b'{' => {
                        self.flow += 1;
                        if self.depth() > self.max {
                            return Err(i);
                        }
                        self.at_node_start = true;
                    }
                    b']' | b'}' => {
                        self.flow -= 1;
                        self.at_node_start = false;
                    }
                    b',' | b':' => self.at_node_start = true,
                    b'"' | b'\'' if self.at_node_start => {
                        self.quote = Some(c);
                        self.at_node_start = false;
                    }
                    b'-' | b'?' if self.at_node_start && blank_or_end(line.get(i + 1)) => {}
                    b'&' | b'!' if self.at_node_start => {
                        while i < line.len()
                            && !matches!(line[i], b' ' | b'\t' | b',' | b'[' | b']' | b'{' | b'}')
                        {
                            i += 1;
                        }
                        continue;
                    }
                    _ => self.at_node_start = false,
                }
                i += 1;
                continue;
            }
            if self.at_node_start {
                match c {
                    b'[' | b'{' => {
                        self.flow = 1;
                        if self.depth() > self.max {
                            return Err(i);
                        }
                    }
                    b'"' | b'\'' => {
                        self.quote = Some(c);
                        token_col = Some(i);
                        node_col = Some(i);
                        self.at_node_start = false;
                    }
                    b'|' | b'>' => {
                        // A block scalar: the rest of the line is its header.
                        let threshold = match node_col {
                            Some(col) => col as isize,
                            None => self.levels.last().map_or(-1, |&l| (l / 2) as isize),
                        };
                        self.block_scalar = Some(threshold);
                        return Ok(());
                    }
                    b'-' | b'?' if blank_or_end(line.get(i + 1)) => {
                        self.push(2 * i + 1, i)?;
                        node_col = Some(i);
                    }
                    b'&' | b'!' => {
                        // An anchor or a tag: the node itself follows.
                        while i < line.len() && !matches!(line[i], b' ' | b'\t') {
                            i += 1;
                        }
                        continue;
                    }
                    _ => {
                        token_col = Some(i);
                        node_col = Some(i);
                        self.at_node_start = false;
                    }
                }
                i += 1;
                continue;
            }
            // Inside a plain scalar, or after a quoted one: `: ` makes it a mapping key.
            if c == b':' && blank_or_end(line.get(i + 1)) {
                if let Some(col) = token_col.take() {
                    self.push(2 * col, col)?;
                    node_col = Some(col);
                }
                self.at_node_start = true;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max: usize) -> bool {
        check_yaml(
            text,
            &Limits {
                max_bytes: usize::MAX,
                max_depth: max,
            },
        )
        .is_ok()
    }

    /// The smallest limit the text passes.
    fn depth_of(text: &str) -> usize {
        (0..200)
            .find(|&m| depth_ok(text, m))
            .expect("depth under 200")
    }

    #[test]
    fn block_structure_is_counted_like_the_parser_nests_it() {
        assert_eq!(depth_of("a: 1\n"), 1);
        assert_eq!(depth_of("a:\n  b:\n    c: 1\n"), 3);
        assert_eq!(depth_of("a:\n- b\n- c\nd: 1\n"), 2);
        assert_eq!(depth_of("a:\n  - b\n  - c\n"), 2);
        assert_eq!(depth_of("- name: a\n  value: 1\n- name: b\n"), 2);
        assert_eq!(depth_of("- - - x\n"), 3);
        assert_eq!(depth_of("a: {b: [1, 2]}\n"), 3);
        assert_eq!(depth_of("a:\n  b: 1\nc:\n  d: 1\n"), 2);
        assert_eq!(depth_of("just a scalar\n"), 0);
        assert_eq!(depth_of("\"a\": {\"b\": 1}\n"), 2);
    }

    #[test]
    fn scalars_comments_and_block_text_do_not_count() {
        // Brackets inside plain scalars, quoted scalars, comments and block scalars.
        let text = "\
cmd: echo [[[[[[ {{{{{{
query: 'sum(rate(x{a=\"[\"}[1m]))'
quoted: \"{{{{ [[[[ \\\" [[[[\"
# [[[[[[[[[[[[[[[[
script: |
  [[[[[[[[[[[[[[[[[[[[
  {{{{{{{{{{{{{{{{{{{{
    deeper: [[[[[[[[
folded: >-
  {{{{{{{{{{
next: 1 # [[[[[[[[[[
url: http://example.com/a:b/[x]
";
        assert_eq!(depth_of(text), 1, "{text}");
        // A block scalar ends at the first line indented no more than its key.
        assert_eq!(depth_of("a:\n  s: |\n    [[[[\n  t: [[[1]]]\n"), 5);
        // In a sequence entry's mapping, content is indented past the key.
        assert_eq!(depth_of("- s: |\n    [[[[[[\n  t: 1\n"), 2);
    }

    #[test]
    fn multi_line_flow_and_quotes_continue() {
        assert_eq!(
            depth_of("a: [\n  [\n    1\n  ],\n  \"x\n ]]]]\"\n]\nb: 1\n"),
            3
        );
        assert_eq!(depth_of("a: 'it''s [ { '\nb: {c: 1}\n"), 2);
    }

    #[test]
    fn documents_reset_the_count() {
        // An unclosed flow collection does not carry into the next document.
        let text = "a: [[\n---\nb: [1]\n---\nc: 1\n...\n";
        assert_eq!(depth_of(text), 3);
        assert_eq!(depth_of("--- |\n  [[[[[[[[\n---\nx: 1\n"), 1);
        assert_eq!(depth_of("--- {a: {b: 1}}\n"), 2);
    }

    #[test]
    fn anchors_tags_and_aliases() {
        assert_eq!(depth_of("a: &x {b: 1}\nc: *x\nd: !!map {e: 1}\n"), 2);
        assert_eq!(depth_of("- &y\n  - 1\n"), 2);
    }

    #[test]
    fn deep_flow_is_refused_with_its_position() {
        let text = format!("data:\n  x: {}1{}\n", "{a: ".repeat(500), "}".repeat(500));
        let err = check_yaml(&text, &Limits::default()).expect_err("too deep");
        assert_eq!(
            err,
            LimitError::TooDeep {
                limit: 100,
                line: 2,
                // 2 block levels, then the 99th `{` (4 bytes each) passes the limit.
                column: 6 + 98 * 4,
            }
        );
        assert_eq!(
            err.to_string(),
            "the input nests more than 100 levels deep (line 2, column 398)"
        );
        // The parser agrees on what is within the limit.
        let ok = format!("x: {}1{}\n", "[".repeat(99), "]".repeat(99));
        check_yaml(&ok, &Limits::default()).expect("99 + 1 levels pass");
        serde_yaml::from_str::<serde_json::Value>(&ok).expect("and parse");
    }

    #[test]
    fn deep_blocks_are_refused() {
        let mut text = String::new();
        for i in 0..150 {
            text.push_str(&" ".repeat(i));
            text.push_str("k:\n");
        }
        let err = check_yaml(&text, &Limits::default()).expect_err("too deep");
        assert!(
            matches!(err, LimitError::TooDeep { line: 101, .. }),
            "{err}"
        );
    }

    #[test]
    fn size_is_checked_first() {
        let limits = Limits::with_max_bytes(10);
        assert_eq!(
            check_yaml("a: 12345678901", &limits),
            Err(LimitError::TooLarge {
                size: 14,
                limit: 10
            })
        );
        assert_eq!(
            LimitError::TooLarge {
                size: 4 * 1024 * 1024,
                limit: API_SERVER_MAX_BYTES
            }
            .to_string(),
            "the input is 4.0 MiB (4194304 bytes), over the limit of 3.0 MiB"
        );
    }

    #[test]
    fn json_depth_skips_strings() {
        let limits = Limits {
            max_bytes: 1 << 20,
            max_depth: 3,
        };
        check_json(br#"{"a": ["[[[[", {"b": "\"{{{{"}]}"#, &limits).expect("depth 3");
        let err = check_json(b"{\"a\":\n [[[1]]]}", &limits).expect_err("depth 4");
        assert_eq!(
            err,
            LimitError::TooDeep {
                limit: 3,
                line: 2,
                column: 4
            }
        );
    }

    #[test]
    fn parse_helpers_check_then_parse() {
        let v: serde_json::Value = from_yaml_str("a: [1]\n", &Limits::default()).expect("ok");
        assert_eq!(v, serde_json::json!({"a": [1]}));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            from_json_slice::<serde_json::Value>(deep.as_bytes(), &Limits::default()),
            Err(Error::Limit(LimitError::TooDeep { .. }))
        ));
        assert!(matches!(
            from_yaml_str::<serde_json::Value>("a: [", &Limits::default()),
            Err(Error::Yaml(_))
        ));
    }

    #[test]
    fn large_inputs_at_and_over_the_limit() {
        // 2 MB of nesting at the limit passes, 2 MB of `[` is refused (the figures are in
        // `cargo bench -p flagger-cli --bench input`).
        let unit = format!("- {}1{}\n", "[".repeat(99), "]".repeat(99));
        let wide = unit.repeat(2 * 1024 * 1024 / unit.len());
        check_yaml(&wide, &Limits::default()).expect("at the limit");
        let deep = "[".repeat(2 * 1024 * 1024);
        assert!(check_yaml(&deep, &Limits::default()).is_err());
    }

    fn value_depth(v: &serde_yaml::Value) -> usize {
        match v {
            serde_yaml::Value::Sequence(s) => 1 + s.iter().map(value_depth).max().unwrap_or(0),
            serde_yaml::Value::Mapping(m) => 1 + m.values().map(value_depth).max().unwrap_or(0),
            serde_yaml::Value::Tagged(t) => value_depth(&t.value),
            _ => 0,
        }
    }

    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                yaml_files(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_projects_manifests_are_counted_as_deep_as_they_parse() {
        // Every YAML file of the repository (install manifests, chart values, test fixtures):
        // the scan never counts less than the parser nests, and at most two levels more.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        yaml_files(&root.join("deploy"), &mut files);
        yaml_files(&root.join("crates/cli/tests/fixtures"), &mut files);
        let mut checked = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            let mut parsed = 0;
            let mut ok = true;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                match <serde_yaml::Value as serde::Deserialize>::deserialize(doc) {
                    Ok(v) => parsed = parsed.max(value_depth(&v)),
                    Err(_) => {
                        // The stream iterator repeats its error: stop at the first.
                        ok = false;
                        break;
                    }
                }
            }
            if !ok || text.contains("{{") {
                // Invalid on purpose, or a Helm template: not YAML until rendered.
                continue;
            }
            let counted = depth_of(&text);
            assert!(
                counted >= parsed && counted <= parsed + 2,
                "{}: counted {counted}, parsed {parsed}",
                file.display()
            );
            checked += 1;
        }
        assert!(checked > 20, "only {checked} files checked");
    }
}

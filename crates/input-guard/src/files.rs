//! Reading the files a user points a command at (manifests, kubeconfigs): bounded in size, and
//! each YAML document checked for size and depth (in linear time) before it is parsed, so that a
//! hostile or broken file is answered with a clear message at once instead of after minutes of
//! parsing (the YAML parser is quadratic in the nesting of flow collections). Used by
//! `flagger validate`, `flagger lint` and `flagger uninstall`.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::limits::{self, Limits};

/// Largest file read (a rendered kustomization of CRDs is a few MB).
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// One document: kube-apiserver's limit on an object, and the default depth limit.
pub const DOCUMENT_LIMITS: Limits = Limits {
    max_bytes: limits::API_SERVER_MAX_BYTES,
    max_depth: limits::DEFAULT_MAX_DEPTH,
};

fn too_large(len: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "{}: larger than the {} MiB this command reads",
        limits::LimitError::TooLarge {
            size: usize::try_from(len).unwrap_or(usize::MAX),
            limit: MAX_FILE_BYTES
        },
        MAX_FILE_BYTES / (1024 * 1024)
    ))
}

/// Reads a file of at most [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_FILE_BYTES as u64 {
        return Err(too_large(len));
    }
    read_limited(std::fs::File::open(path)?)
}

/// Reads standard input, at most [`MAX_FILE_BYTES`].
pub fn read_stdin() -> std::io::Result<String> {
    read_limited(std::io::stdin())
}

fn read_limited(r: impl Read) -> std::io::Result<String> {
    let mut text = String::new();
    r.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_FILE_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// Parses one YAML document after checking it against [`DOCUMENT_LIMITS`].
pub fn yaml_document(text: &str) -> Result<Value, String> {
    limits::check_yaml(text, &DOCUMENT_LIMITS).map_err(|e| format!("refused: {e}"))?;
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_over_the_limits_are_refused_before_parsing() {
        assert_eq!(
            yaml_document("a: [1]\n").expect("parses"),
            serde_json::json!({"a": [1]})
        );
        let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        let e = yaml_document(&deep).expect_err("too deep");
        assert_eq!(
            e,
            "refused: the input nests more than 100 levels deep (line 1, column 103)"
        );
        let big = format!("a: \"{}\"\n", "x".repeat(4 * 1024 * 1024));
        assert!(
            yaml_document(&big)
                .expect_err("too big")
                .contains("over the limit of 3.0 MiB")
        );
        assert!(
            yaml_document("a: [")
                .expect_err("bad")
                .contains("did not find expected")
        );
    }

    #[test]
    fn files_are_read_up_to_the_limit() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.yaml");
        std::fs::write(&path, "a: 1\n").expect("write");
        assert_eq!(read_file(&path).expect("read"), "a: 1\n");
        let f = std::fs::File::create(&path).expect("create");
        f.set_len(MAX_FILE_BYTES as u64 + 1).expect("sparse file");
        let e = read_file(&path).expect_err("too large");
        assert!(e.to_string().contains("larger than the 64 MiB"), "{e}");
    }
}

//! "Did you mean …?": the valid names closest to a misspelt one.

/// The candidates closest to `input`, best first (at most three): a case-insensitive match,
/// then names that extend the input or that the input extends (`gatewayapi` →
/// `gatewayapi:v1`), then names within a small edit distance.
pub fn closest<'a>(input: &str, candidates: &[&'a str]) -> Vec<&'a str> {
    let lower = input.to_ascii_lowercase();
    if lower.is_empty() {
        return Vec::new();
    }
    if let Some(exact) = candidates
        .iter()
        .find(|c| c.to_ascii_lowercase() == lower && !c.is_empty())
    {
        return vec![*exact];
    }
    let mut out: Vec<&'a str> = Vec::new();
    if lower.len() >= 3 {
        for c in candidates {
            let cl = c.to_ascii_lowercase();
            if cl.is_empty() {
                continue;
            }
            if (cl.starts_with(&lower) || (lower.starts_with(&cl) && cl.len() >= 3))
                && !out.contains(c)
            {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        let budget = (lower.chars().count() / 3).max(1);
        let mut scored: Vec<(usize, &'a str)> = candidates
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| {
                let cl = c.to_ascii_lowercase();
                let d = variants(&lower)
                    .iter()
                    .map(|v| strsim::osa_distance(v, &cl))
                    .min()
                    .unwrap_or(usize::MAX);
                (d, *c)
            })
            .filter(|(d, _)| *d <= budget)
            .collect();
        scored.sort_by_key(|(d, _)| *d);
        if let Some((best, _)) = scored.first().copied() {
            out.extend(scored.iter().filter(|(d, _)| *d == best).map(|(_, c)| *c));
        }
    }
    out.truncate(3);
    out
}

/// The input and its singular forms (`canaries` → `canary`), so plurals find their kind.
fn variants(lower: &str) -> Vec<String> {
    let mut out = vec![lower.to_string()];
    if let Some(stem) = lower.strip_suffix("ies") {
        out.push(format!("{stem}y"));
    }
    if let Some(stem) = lower.strip_suffix('s') {
        out.push(stem.to_string());
    }
    out
}

/// `" Did you mean `a` or `b`?"`, or an empty string when nothing is close.
pub fn did_you_mean(input: &str, candidates: &[&str]) -> String {
    let close = closest(input, candidates);
    if close.is_empty() {
        return String::new();
    }
    let names: Vec<String> = close.iter().map(|c| format!("`{c}`")).collect();
    format!(" Did you mean {}?", names.join(" or "))
}

/// `a, b, c` for messages.
pub fn list(candidates: &[&str]) -> String {
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDERS: &[&str] = &["istio", "gatewayapi:v1", "gatewayapi:v1beta1", "linkerd"];

    #[test]
    fn prefers_extensions_then_typos() {
        assert_eq!(
            closest("gatewayapi", PROVIDERS),
            vec!["gatewayapi:v1", "gatewayapi:v1beta1"]
        );
        assert_eq!(closest("istoi", PROVIDERS), vec!["istio"]);
        assert_eq!(closest("Linkerd", PROVIDERS), vec!["linkerd"]);
        assert!(closest("consul", PROVIDERS).is_empty());
        assert_eq!(
            did_you_mean("linkred", PROVIDERS),
            " Did you mean `linkerd`?"
        );
        assert_eq!(
            closest("Canaries", &["Canary", "MetricTemplate"]),
            vec!["Canary"]
        );
    }
}

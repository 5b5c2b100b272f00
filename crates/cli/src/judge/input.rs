//! Reading series from files for `flagger judge`.
//!
//! **CSV** (a header line, then one row per point):
//! * *long form*: the header has `metric` and `value` columns (other columns, such as a
//!   timestamp, are ignored): one row per metric and point;
//! * *wide form*: any other header: every column is a metric named by its header, except
//!   `timestamp` and `time`, which are ignored; an empty cell is no point.
//!
//! A value is a number, or `NaN`/`Inf`/`-Inf` (handled by the metric's `nanStrategy`).
//!
//! **JSON**: an object of metric name → array of values (numbers, numeric strings, or `null`
//! for a point that is not a number), or a Prometheus `query_range` answer (the whole response
//! or its `data` object) holding one series, which takes the name given by `--metric`.

use std::path::Path;

use serde_json::Value;

/// Named series, in the order they first appear.
#[derive(Debug, Default, PartialEq)]
pub struct Series(pub Vec<(String, Vec<f64>)>);

impl Series {
    pub fn get(&self, name: &str) -> Option<&Vec<f64>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn entry(&mut self, name: &str) -> &mut Vec<f64> {
        if let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            &mut self.0[i].1
        } else {
            self.0.push((name.to_string(), Vec::new()));
            let last = self.0.len() - 1;
            &mut self.0[last].1
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

/// Reads a series file; the format follows the extension (`.json`, else CSV).
pub fn read_file(path: &Path, single_name: &str) -> Result<Series, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if is_json {
        parse_json(&text, single_name)
    } else {
        parse_csv(&text)
    };
    parsed.map_err(|e| format!("{}: {e}", path.display()))
}

fn number(cell: &str) -> Option<f64> {
    let t = cell.trim();
    t.parse::<f64>().ok()
}

/// Parses CSV text (see the module documentation).
pub fn parse_csv(text: &str) -> Result<Series, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the header line: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err("no header line (the first line names the columns)".to_string());
    }
    let find = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut out = Series::default();
    let long = find("metric").zip(find("value"));
    if long.is_none() {
        for h in &headers {
            if !is_time_column(h) {
                if h.is_empty() {
                    return Err("a column has no name in the header line".to_string());
                }
                out.entry(h);
            }
        }
        if out.0.is_empty() {
            return Err("no metric column (only timestamps)".to_string());
        }
    }
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("line {line}: {e}"))?;
        if let Some((m, v)) = long {
            let name = record.get(m).unwrap_or("");
            if name.is_empty() {
                return Err(format!("line {line}: the metric column is empty"));
            }
            let cell = record.get(v).unwrap_or("");
            if cell.is_empty() {
                continue;
            }
            let value = number(cell)
                .ok_or_else(|| format!("line {line}: value {cell:?} is not a number"))?;
            out.entry(name).push(value);
        } else {
            for (h, cell) in headers.iter().zip(record.iter()) {
                if is_time_column(h) || cell.is_empty() {
                    continue;
                }
                let value = number(cell)
                    .ok_or_else(|| format!("line {line}: {h} {cell:?} is not a number"))?;
                out.entry(h).push(value);
            }
        }
    }
    Ok(out)
}

fn is_time_column(h: &str) -> bool {
    h.eq_ignore_ascii_case("timestamp") || h.eq_ignore_ascii_case("time")
}

fn json_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => number(s),
        Value::Null => Some(f64::NAN),
        _ => None,
    }
}

/// Parses JSON text (see the module documentation).
pub fn parse_json(text: &str, single_name: &str) -> Result<Series, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let data = doc.get("data").unwrap_or(&doc);
    if data.get("resultType").is_some() {
        return matrix(data, single_name);
    }
    let Value::Object(map) = &doc else {
        return Err("expected an object of metric name to array of values".to_string());
    };
    let mut out = Series::default();
    for (name, values) in map {
        let Value::Array(items) = values else {
            return Err(format!("{name}: expected an array of values"));
        };
        let series = out.entry(name);
        for (i, item) in items.iter().enumerate() {
            let v =
                json_number(item).ok_or_else(|| format!("{name}[{i}]: {item} is not a number"))?;
            series.push(v);
        }
    }
    Ok(out)
}

/// One series of a Prometheus range-query answer, named `name`.
pub fn matrix(data: &Value, name: &str) -> Result<Series, String> {
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    if kind != "matrix" {
        return Err(format!(
            "a Prometheus answer of type {kind:?}; a range query (matrix) is needed"
        ));
    }
    let result = data
        .get("result")
        .and_then(Value::as_array)
        .ok_or("a Prometheus answer without a result list")?;
    let mut out = Series::default();
    let series = out.entry(name);
    match result.as_slice() {
        [] => {}
        [one] => {
            let values = one
                .get("values")
                .and_then(Value::as_array)
                .ok_or("a series without values")?;
            for pair in values {
                let v = pair
                    .get(1)
                    .and_then(json_number)
                    .ok_or_else(|| format!("a sample {pair} is not [time, \"value\"]"))?;
                series.push(v);
            }
        }
        many => {
            return Err(format!(
                "{} series where one is needed: aggregate them in the query (sum, avg, max …)",
                many.len()
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_csv_one_column_per_metric() {
        let s = parse_csv("timestamp,latency,errors\n1,0.1,0\n2,0.2,\n3,NaN,1\n").expect("parses");
        assert_eq!(s.0.len(), 2);
        assert_eq!(s.get("errors"), Some(&vec![0.0, 1.0]));
        let latency = s.get("latency").expect("latency");
        assert_eq!(&latency[..2], &[0.1, 0.2]);
        assert!(latency[2].is_nan());
    }

    #[test]
    fn long_csv_with_a_metric_column() {
        let s = parse_csv("time,metric,value\n1,a,1\n1,b,2\n2,a,3\n").expect("parses");
        assert_eq!(
            s.0,
            vec![("a".into(), vec![1.0, 3.0]), ("b".into(), vec![2.0])]
        );
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert_eq!(
            parse_csv("latency\n0.1\nfast\n").expect_err("bad value"),
            "line 3: latency \"fast\" is not a number"
        );
        assert!(
            parse_csv("a,b\n1\n")
                .expect_err("short row")
                .starts_with("line 2: ")
        );
        assert_eq!(
            parse_csv("timestamp\n1\n").expect_err("no metric"),
            "no metric column (only timestamps)"
        );
    }

    #[test]
    fn json_object_and_prometheus_matrix() {
        let s = parse_json(r#"{"latency": [0.1, "0.2", null]}"#, "x").expect("parses");
        let v = s.get("latency").expect("latency");
        assert_eq!(&v[..2], &[0.1, 0.2]);
        assert!(v[2].is_nan());

        let m = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1.5"],[2,"NaN"]]}]}}"#;
        let s = parse_json(m, "p99").expect("parses");
        let v = s.get("p99").expect("named by --metric");
        assert_eq!(v[0], 1.5);
        assert!(v[1].is_nan());

        let two = r#"{"resultType":"matrix","result":[{"values":[]},{"values":[]}]}"#;
        assert!(
            parse_json(two, "m")
                .expect_err("two series")
                .starts_with("2 series")
        );
        assert!(parse_json("[1]", "m").is_err());
    }
}

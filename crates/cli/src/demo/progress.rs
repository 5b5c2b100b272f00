//! Live progress of the demo canary: one updating line on a terminal, plain lines otherwise;
//! and the timeline of its events at the end.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::bail;
use flagger_api::Canary;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};

pub struct Progress {
    client: Client,
    ns: String,
    name: String,
    metrics_url: String,
    http: reqwest::Client,
    live: bool,
    started: Timestamp,
    last: String,
}

impl Progress {
    pub fn new(client: Client, ns: &str, name: &str, metrics_url: String, plain: bool) -> Self {
        Progress {
            client,
            ns: ns.into(),
            name: name.into(),
            metrics_url,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            live: !plain && std::io::stdout().is_terminal(),
            started: Timestamp::now(),
            last: String::new(),
        }
    }

    pub async fn canary(&self) -> anyhow::Result<Canary> {
        Ok(Api::<Canary>::namespaced(self.client.clone(), &self.ns)
            .get(&self.name)
            .await?)
    }

    /// Shows progress until `done` holds for the canary, or fails after `timeout`.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        procs: &mut super::processes::Processes,
        done: impl Fn(&Canary) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(died) = procs.exited() {
                if self.live {
                    println!();
                }
                bail!("{died}");
            }
            if let Ok(c) = self.canary().await {
                let line = self.describe(&c).await;
                self.show(&line);
                if done(&c) {
                    if self.live {
                        println!();
                        self.last.clear();
                    }
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                if self.live {
                    println!();
                }
                bail!("timed out after {timeout:?} waiting for the canary: {what}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn show(&mut self, line: &str) {
        if self.live {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
            self.last = line.to_string();
        } else {
            // Plain output: a line per change of phase, iteration or failed checks.
            let key = line.split(" | ").next().unwrap_or_default().to_string();
            if key != self.last {
                println!("{line}");
                self.last = key;
            }
        }
    }

    async fn describe(&self, c: &Canary) -> String {
        let s = c.status.clone().unwrap_or_default();
        let elapsed = (Timestamp::now().as_second() - self.started.as_second()).max(0);
        let iterations = c
            .spec
            .analysis
            .as_ref()
            .and_then(|a| a.iterations)
            .unwrap_or(0);
        let weighted = c.spec.analysis.as_ref().is_some_and(|a| {
            a.step_weight.is_some() || a.step_weights.as_ref().is_some_and(|w| !w.is_empty())
        });
        let step = if weighted {
            format!("canary weight {:>3}%", s.canary_weight.unwrap_or(0))
        } else {
            // Blue/green counts one step past the last iteration (all traffic to the canary).
            format!(
                "iteration {}/{iterations}",
                s.iterations.unwrap_or(0).min(iterations)
            )
        };
        let mut line = format!(
            "[{elapsed:>4}s] {:<16} {step}  failed checks {}",
            format!("{:?}", s.phase),
            s.failed_checks.unwrap_or(0),
        );
        let metrics = self.metric_values().await;
        if !metrics.is_empty() {
            line.push_str(" | ");
            line.push_str(&metrics.join("  "));
        }
        line
    }

    /// The last value of each metric check, from the controller's
    /// `flagger_canary_metric_analysis` gauge.
    async fn metric_values(&self) -> Vec<String> {
        let Ok(resp) = self.http.get(&self.metrics_url).send().await else {
            return Vec::new();
        };
        let body = resp.text().await.unwrap_or_default();
        let name = format!("name=\"{}\"", self.name);
        body.lines()
            .filter(|l| l.starts_with("flagger_canary_metric_analysis{") && l.contains(&name))
            .filter_map(|l| {
                let metric = l.split("metric=\"").nth(1)?.split('"').next()?;
                let value: f64 = l.rsplit(' ').next()?.parse().ok()?;
                Some(match metric {
                    "request-success-rate" => format!("success rate {value:.1}%"),
                    // The gauge holds seconds, as Flagger records request-duration.
                    "request-duration" => format!("p99 {:.0}ms", value * 1000.0),
                    other => format!("{other} {value}"),
                })
            })
            .collect()
    }

    /// The canary's events, oldest first, as `+SECONDS  MESSAGE (xCOUNT)`.
    pub async fn timeline(&self) -> Vec<String> {
        let mut events: Vec<Event> = Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some("Canary")
                    && e.involved_object.name.as_deref() == Some(self.name.as_str())
            })
            .collect();
        events.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
        events
            .iter()
            .map(|e| {
                let at = e
                    .first_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second() - self.started.as_second())
                    .unwrap_or(0);
                let count = e.count.unwrap_or(1);
                let kind = if e.type_.as_deref() == Some("Warning") {
                    "!"
                } else {
                    " "
                };
                let times = if count > 1 {
                    format!(" (x{count})")
                } else {
                    String::new()
                };
                format!(
                    "+{at:>4}s {kind} {}{times}",
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }
}

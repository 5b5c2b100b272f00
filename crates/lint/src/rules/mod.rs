//! The rules of `flagger lint`: pure functions from the objects of a GitOps repository to
//! findings. No I/O and no clock: [`crate::load`] reads the files, these modules judge them.
//!
//! Every rule starts from a Canary and asks which objects its controller will generate or
//! rewrite (reference §3 and §4): a manifest in the repository for one of those objects makes
//! the GitOps tool and the controller overwrite each other, on every sync interval. One module
//! per family of generated objects:
//!
//! * `services`: the apex, `-primary` and `-canary` Services, and Services selecting the
//!   target's pods;
//! * `workloads`: the primary workload, its config copies and autoscalers, and the target's
//!   `spec.replicas`;
//! * `routes`: the routing objects of each provider.

mod routes;
mod services;
#[cfg(test)]
mod tests;
mod workloads;

use flagger_core::validate::diagnose;

use crate::canary::view;
use crate::finding::{Finding, Level, Rule, finding};
use crate::object::Object;
use crate::settings::Context;
use routes::generated_routes;
use services::{generated_services, selects_canary_pods};
use workloads::{generated_autoscalers, generated_configs, generated_workload, target_replicas};

/// Runs every rule over the objects. Findings are sorted by file and line, duplicates (an
/// object read twice) dropped.
pub fn lint(objects: &[Object], ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut canaries = Vec::new();
    for o in objects {
        if o.kind() != "Canary" || o.group() != flagger_api::GROUP {
            continue;
        }
        match serde_json::from_value::<flagger_api::Canary>(o.value.clone()) {
            Ok(canary) => {
                // Briefly: one line per Canary; `flagger validate` lists every problem.
                let errors = diagnose(&canary, &ctx.validation).errors;
                if let Some(first) = errors.first() {
                    let more = match errors.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    out.push(finding(
                        Level::Error,
                        Rule::InvalidCanary,
                        o,
                        format!(
                            "fails validation: {}: {}{more}; `flagger validate {}` lists every \
                             problem",
                            first.path, first.message, o.source.path
                        ),
                    ));
                }
                canaries.push(view(o, &canary, objects, ctx));
            }
            Err(e) => out.push(finding(
                Level::Error,
                Rule::InvalidCanary,
                o,
                format!("cannot be read as a Canary: {e}"),
            )),
        }
    }
    for c in &canaries {
        generated_services(c, objects, &mut out);
        generated_workload(c, objects, &mut out);
        generated_configs(c, objects, &mut out);
        generated_autoscalers(c, objects, &mut out);
        generated_routes(c, objects, &mut out);
        target_replicas(c, objects, &mut out);
        selects_canary_pods(c, objects, &mut out);
    }
    out.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                f.source.clone(),
                f.level,
                f.rule,
                f.object.clone(),
                f.namespace.clone(),
                f.message.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    out.dedup();
    out
}

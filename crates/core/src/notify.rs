//! Alerts: who receives one (severity routing) and the JSON each chat service is sent
//! (Flagger's `pkg/notifier`, reference §8). Pure: the controller resolves AlertProviders and
//! Secrets and does the HTTP.

use serde_json::{Value, json};

use crate::model::{Severity, Steps, Strategy, ValidatedCanary};

/// Default `spec.username` of an AlertProvider.
pub const DEFAULT_USERNAME: &str = "flagger";
/// Default `spec.channel` of an AlertProvider.
pub const DEFAULT_CHANNEL: &str = "general";

/// The chat services Flagger posts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifierKind {
    Slack,
    Discord,
    Rocket,
    MsTeams,
    GChat,
}

impl NotifierKind {
    /// The kind for an AlertProvider `spec.type`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "slack" => Self::Slack,
            "discord" => Self::Discord,
            "rocket" => Self::Rocket,
            "msteams" => Self::MsTeams,
            "gchat" => Self::GChat,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Rocket => "rocket",
            Self::MsTeams => "msteams",
            Self::GChat => "gchat",
        }
    }

    /// Whether the `token` of the provider's Secret is sent (`Authorization: Bearer`): Slack
    /// only, as in Flagger.
    pub fn sends_token(self) -> bool {
        self == Self::Slack
    }
}

/// One name/value field of an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: String,
}

impl Field {
    fn new(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// An alert about one canary, ready to be rendered for any service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Canary name.
    pub name: String,
    pub namespace: String,
    pub message: String,
    pub fields: Vec<Field>,
    pub severity: Severity,
}

/// Where one notification goes: a resolved AlertProvider or the global notifier. Its `Debug`
/// hides the URL and the token (webhook URLs are credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    pub kind: NotifierKind,
    pub url: String,
    pub channel: String,
    pub username: String,
    pub proxy: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("channel", &self.channel)
            .field("username", &self.username)
            .field("proxy", &self.proxy.as_deref().map(crate::redact::url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Whether an alert route of severity `route` receives an alert of severity `alert`: `info`
/// receives everything, `warn` receives warn and error, `error` only error.
pub fn route_receives(route: Severity, alert: Severity) -> bool {
    alert >= route
}

/// The fields of an alert: `Cluster` first when a cluster name is set, then (for alerts with
/// metadata) target, threshold, progress deadline and traffic routing, as Flagger writes them.
pub fn fields(c: &ValidatedCanary, with_metadata: bool, cluster_name: Option<&str>) -> Vec<Field> {
    let mut fields = Vec::new();
    if let Some(cluster) = cluster_name.filter(|s| !s.is_empty()) {
        fields.push(Field::new("Cluster", cluster));
    }
    if !with_metadata {
        return fields;
    }
    fields.push(Field::new(
        "Target",
        format!("{}/{}.{}", c.target.kind.kind(), c.target.name, c.namespace),
    ));
    fields.push(Field::new(
        "Failed checks threshold",
        c.analysis.threshold.to_string(),
    ));
    fields.push(Field::new(
        "Progress deadline",
        format!("{}s", c.progress_deadline.as_secs()),
    ));
    let routing = match &c.analysis.strategy {
        Strategy::Canary {
            steps: Steps::Linear(step),
            max_weight,
            ..
        } => Some(format!("Weight step: {step} max: {max_weight}")),
        Strategy::Canary {
            steps: Steps::Explicit(steps),
            max_weight,
            ..
        } => Some(format!(
            "Weight steps: {} max: {max_weight}",
            steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )),
        Strategy::AbTesting { .. } => Some("A/B Testing".to_string()),
        Strategy::BlueGreen { .. } => Some("Blue/Green".to_string()),
    };
    if let Some(routing) = routing {
        fields.push(Field::new("Traffic routing", routing));
    }
    fields
}

/// The URL the notification is posted to: Discord's Slack-compatible endpoint is the webhook
/// URL with `/slack` appended.
pub fn post_url(kind: NotifierKind, address: &str) -> String {
    if kind == NotifierKind::Discord && !address.ends_with("/slack") {
        format!("{address}/slack")
    } else {
        address.to_string()
    }
}

/// Checks an address as Flagger does (`url.ParseRequestURI`): an absolute URL. The error
/// does not quote the address: a webhook address is a credential.
pub fn check_address(address: &str) -> Result<(), String> {
    match url::Url::parse(address) {
        Ok(u) if u.has_host() || !u.cannot_be_a_base() => Ok(()),
        Ok(_) => Err("invalid address: not an absolute URL".to_string()),
        Err(e) => Err(format!("invalid address: {e}")),
    }
}

/// The JSON body for a service.
pub fn payload(d: &Destination, n: &Notification) -> Value {
    let workload = format!("{}.{}", n.name, n.namespace);
    let error = n.severity == Severity::Error;
    match d.kind {
        NotifierKind::Slack | NotifierKind::Discord | NotifierKind::Rocket => {
            let color = match (d.kind, error) {
                (NotifierKind::Rocket, true) => "#FF0000",
                (NotifierKind::Rocket, false) => "#0076D7",
                (_, true) => "danger",
                (_, false) => "good",
            };
            let fields: Vec<Value> = n
                .fields
                .iter()
                .map(|f| json!({"title": f.name, "value": f.value, "short": false}))
                .collect();
            json!({
                "channel": d.channel,
                "username": d.username,
                "icon_url": "",
                "icon_emoji": ":rocket:",
                "attachments": [{
                    "color": color,
                    "author_name": workload,
                    "text": n.message,
                    "mrkdwn_in": ["text"],
                    "fields": fields,
                }],
            })
        }
        NotifierKind::MsTeams => {
            let facts: Vec<Value> = n
                .fields
                .iter()
                .map(|f| json!({"name": f.name, "value": f.value}))
                .collect();
            json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": if error { "FF0000" } else { "0076D7" },
                "summary": workload,
                "sections": [{
                    "activityTitle": n.message,
                    "activitySubtitle": workload,
                    "facts": facts,
                }],
            })
        }
        NotifierKind::GChat => {
            let paragraph = |text: String| json!({"widgets": [{"textParagraph": {"text": text}}]});
            let mut sections = vec![paragraph(format!(
                "<font color=#848484><strong>{}</strong></font>",
                n.message
            ))];
            sections.extend(n.fields.iter().map(|f| {
                paragraph(format!(
                    "{}<br><font color=#848484><strong>{}</strong></font>",
                    f.name, f.value
                ))
            }));
            json!({
                "cards": [{
                    "header": {
                        "title": "Flagger",
                        "subtitle": workload,
                        "imageUrl": "https://flagger.app/favicon.png",
                    },
                    "sections": sections,
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn destination(kind: NotifierKind) -> Destination {
        Destination {
            kind,
            url: "https://hooks.example.com/x".into(),
            channel: "on-call".into(),
            username: "flagger".into(),
            proxy: None,
            token: None,
        }
    }

    fn notification(severity: Severity) -> Notification {
        Notification {
            name: "podinfo".into(),
            namespace: "test".into(),
            message: "Canary analysis completed successfully, promotion finished.".into(),
            fields: vec![Field::new("Cluster", "prod-eu")],
            severity,
        }
    }

    #[test]
    fn severity_routing_follows_flagger() {
        use Severity::*;
        let receives = |route, alert| route_receives(route, alert);
        assert!(receives(Info, Info) && receives(Info, Warn) && receives(Info, Error));
        assert!(!receives(Warn, Info) && receives(Warn, Warn) && receives(Warn, Error));
        assert!(!receives(Error, Info) && !receives(Error, Warn) && receives(Error, Error));
    }

    #[test]
    fn slack_payload_is_an_attachment_with_fields() {
        let body = payload(
            &destination(NotifierKind::Slack),
            &notification(Severity::Info),
        );
        assert_eq!(
            body,
            json!({
                "channel": "on-call",
                "username": "flagger",
                "icon_url": "",
                "icon_emoji": ":rocket:",
                "attachments": [{
                    "color": "good",
                    "author_name": "podinfo.test",
                    "text": "Canary analysis completed successfully, promotion finished.",
                    "mrkdwn_in": ["text"],
                    "fields": [{"title": "Cluster", "value": "prod-eu", "short": false}],
                }],
            })
        );
        let error = payload(
            &destination(NotifierKind::Slack),
            &notification(Severity::Error),
        );
        assert_eq!(error["attachments"][0]["color"], "danger");
        let warn = payload(
            &destination(NotifierKind::Slack),
            &notification(Severity::Warn),
        );
        assert_eq!(warn["attachments"][0]["color"], "good");
    }

    #[test]
    fn discord_is_slack_compatible_on_the_slack_endpoint() {
        let d = destination(NotifierKind::Discord);
        assert_eq!(
            payload(&d, &notification(Severity::Error)),
            payload(
                &destination(NotifierKind::Slack),
                &notification(Severity::Error)
            )
        );
        assert_eq!(
            post_url(
                NotifierKind::Discord,
                "https://discord.com/api/webhooks/1/abc"
            ),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            post_url(
                NotifierKind::Discord,
                "https://discord.com/api/webhooks/1/abc/slack"
            ),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            post_url(NotifierKind::Slack, "https://hooks.slack.com/x"),
            "https://hooks.slack.com/x"
        );
    }

    #[test]
    fn rocket_uses_flaggers_colours() {
        let d = destination(NotifierKind::Rocket);
        let info = payload(&d, &notification(Severity::Info));
        assert_eq!(info["attachments"][0]["color"], "#0076D7");
        assert_eq!(info["channel"], "on-call");
        assert_eq!(info["icon_emoji"], ":rocket:");
        let error = payload(&d, &notification(Severity::Error));
        assert_eq!(error["attachments"][0]["color"], "#FF0000");
    }

    #[test]
    fn msteams_payload_is_a_message_card() {
        let d = destination(NotifierKind::MsTeams);
        assert_eq!(
            payload(&d, &notification(Severity::Warn)),
            json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": "0076D7",
                "summary": "podinfo.test",
                "sections": [{
                    "activityTitle": "Canary analysis completed successfully, promotion finished.",
                    "activitySubtitle": "podinfo.test",
                    "facts": [{"name": "Cluster", "value": "prod-eu"}],
                }],
            })
        );
        assert_eq!(
            payload(&d, &notification(Severity::Error))["themeColor"],
            "FF0000"
        );
    }

    #[test]
    fn gchat_payload_is_a_card_with_a_section_per_field() {
        let d = destination(NotifierKind::GChat);
        assert_eq!(
            payload(&d, &notification(Severity::Info)),
            json!({
                "cards": [{
                    "header": {
                        "title": "Flagger",
                        "subtitle": "podinfo.test",
                        "imageUrl": "https://flagger.app/favicon.png",
                    },
                    "sections": [
                        {"widgets": [{"textParagraph": {"text": "<font color=#848484><strong>Canary analysis completed successfully, promotion finished.</strong></font>"}}]},
                        {"widgets": [{"textParagraph": {"text": "Cluster<br><font color=#848484><strong>prod-eu</strong></font>"}}]},
                    ],
                }],
            })
        );
    }

    fn canary(analysis: Value) -> ValidatedCanary {
        let wire: flagger_api::Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "progressDeadlineSeconds": 120,
                "service": {"port": 9898},
                "analysis": analysis
            }
        }))
        .expect("canary");
        crate::validate::validate(&wire, &crate::validate::ValidationContext::default())
            .expect("valid")
            .canary
    }

    fn names_values(fields: &[Field]) -> Vec<(&str, &str)> {
        fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect()
    }

    #[test]
    fn metadata_fields_describe_target_threshold_deadline_and_routing() {
        let c =
            canary(json!({"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50}));
        assert_eq!(
            names_values(&fields(&c, true, Some("prod-eu"))),
            vec![
                ("Cluster", "prod-eu"),
                ("Target", "Deployment/podinfo.test"),
                ("Failed checks threshold", "5"),
                ("Progress deadline", "120s"),
                ("Traffic routing", "Weight step: 10 max: 50"),
            ]
        );
        assert_eq!(
            names_values(&fields(&c, false, Some("prod-eu"))),
            vec![("Cluster", "prod-eu")]
        );
        assert!(fields(&c, false, None).is_empty());
        assert!(fields(&c, false, Some("")).is_empty());

        let steps = canary(json!({"interval": "1m", "threshold": 5, "stepWeights": [1, 20, 80]}));
        assert_eq!(
            fields(&steps, true, None).last().map(|f| f.value.as_str()),
            Some("Weight steps: 1,20,80 max: 80")
        );
        let bg = canary(json!({"interval": "1m", "threshold": 5, "iterations": 3}));
        assert_eq!(
            fields(&bg, true, None).last().map(|f| f.value.as_str()),
            Some("Blue/Green")
        );
        let ab = canary(json!({"interval": "1m", "threshold": 5, "iterations": 3,
            "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}));
        assert_eq!(
            fields(&ab, true, None).last().map(|f| f.value.as_str()),
            Some("A/B Testing")
        );
    }

    #[test]
    fn provider_types_parse_and_only_slack_sends_a_token() {
        for t in flagger_api::alert::ALERT_PROVIDER_TYPES {
            let kind = NotifierKind::parse(t).expect("every CRD type is known");
            assert_eq!(kind.as_str(), *t);
            assert_eq!(kind.sends_token(), *t == "slack");
        }
        assert_eq!(NotifierKind::parse("teams"), None);
    }

    #[test]
    fn addresses_must_be_absolute_urls() {
        assert!(check_address("https://hooks.slack.com/services/x").is_ok());
        assert!(check_address("http://127.0.0.1:8080/slack").is_ok());
        assert!(check_address("hooks.slack.com/services/x").is_err());
        assert!(check_address("").is_err());
        let e = check_address("hooks.slack.com/services/T/B/MARKER").expect_err("relative");
        assert!(!e.contains("MARKER"), "{e}");
    }
}

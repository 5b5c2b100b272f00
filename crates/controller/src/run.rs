//! Wiring: client, watches, the HTTP server and the controller loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flagger_api::Canary;
use flagger_core::validate::ValidationContext;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client, Config, Resource, ResourceExt};
use prometheus_client::registry::Registry;

use crate::args::Args;
use crate::cache;
use crate::canary;
use crate::context::{ConfigIndex, Context, Settings};
use crate::events::Recorder;
use crate::metrics::{InfoLabels, Metrics};
use crate::webhook::Clients;

/// Builds a client from the flags: `-kubeconfig` (or $KUBECONFIG, or in-cluster), `-master`.
pub async fn client(args: &Args) -> anyhow::Result<Client> {
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    if let Some(master) = &args.master {
        config.cluster_url = master
            .parse()
            .with_context(|| format!("invalid -master {master}"))?;
    }
    let builder = kube::client::ClientBuilder::try_from(config)?;
    if args.kubeconfig_qps > 0.0 {
        // client-go's token bucket, approximated: up to `burst` requests per window of
        // `burst / qps` seconds, i.e. `qps` sustained with bursts of `burst`.
        let burst = args.kubeconfig_burst.max(1);
        let window = Duration::from_secs_f64(burst as f64 / args.kubeconfig_qps);
        let limit = tower::limit::RateLimitLayer::new(burst, window);
        return Ok(builder.with_layer(&limit).build());
    }
    Ok(builder.build())
}

/// Sets up logging from `-log-level` and `-log-format` / `-zap-encoding`.
pub fn init_tracing(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},kube=warn,hyper=warn", args.log_level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if args.json_logs() {
        builder.event_format(crate::logfmt::FlaggerJson).try_init()
    } else {
        builder
            .with_writer(crate::logfmt::redacted_stderr)
            .try_init()
    };
}

/// `flagger controller`: runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.version {
        println!("{}", crate::args::version_line());
        return Ok(());
    }
    init_tracing(&args);
    for (level, note) in args.startup_notes() {
        match level {
            crate::args::NoteLevel::Info => tracing::info!("{note}"),
            crate::args::NoteLevel::Warn => tracing::warn!("{note}"),
        }
    }
    let client = client(&args).await?;
    serve(client, args, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the controller with a given client until `shutdown` completes.
pub async fn serve(
    client: Client,
    args: Args,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let canaries: Api<Canary> = cache::scoped(&client, args.namespace.as_deref());
    canaries
        .list(&ListParams::default().limit(1))
        .await
        .context("Canary CRD is not registered")?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics
        .info
        .get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION").into(),
            mesh_provider: args.mesh_provider.as_str().into(),
        })
        .set(1);

    let settings = Settings {
        validation: ValidationContext {
            default_provider: args.mesh_provider,
            min_interval: args.min_analysis_interval,
            no_cross_namespace_refs: args.no_cross_namespace_refs,
            no_data: args.no_data_policy,
        },
        labels: args.label_policy(),
        metrics_server: args.metrics_server.clone(),
        ingress_prefix: args.ingress_annotations_prefix.clone(),
        ingress_class: args.ingress_class.clone().unwrap_or_default(),
        event_webhook: args.event_webhook.clone(),
        config_tracking: args.enable_config_tracking,
        fights: flagger_core::conflict::FightPolicy {
            max_reversions: args.gitops_max_reversions,
            window: args.gitops_window,
        },
        safe_deletion: args.safe_deletion,
        notifier: args.global_notifier().unwrap_or_else(|e| {
            tracing::error!("{e}");
            None
        }),
        cluster_name: args.cluster_name.clone(),
    };
    let ns = args.namespace.as_deref();
    let (caches, feeds) = cache::build(&client, ns);
    let http = Clients::new().context("building HTTP clients")?;
    let outbox = crate::alerts::Outbox::start(http.verified.clone());
    // Leader election's fence: renewals are recorded in it, writes check it.
    let fence = args.enable_leader_election.then(|| {
        Arc::new(crate::leader::Fence::new(
            args.leader_election_lease_duration,
        ))
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        caches: caches.clone(),
        settings,
        metrics,
        recorder: Recorder::new(client.clone()),
        http,
        lookups: crate::templates::Lookups::new(client.clone(), caches.clone()),
        configs: ConfigIndex::default(),
        schedule: Default::default(),
        ready: Default::default(),
        written: Default::default(),
        fights: Default::default(),
        outbox,
        failures: Default::default(),
        fence: fence.clone(),
        refresh: Default::default(),
    });

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("binding port {}", args.port))?;
    let app = crate::server::router(registry, ctx.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    // Leader election: wait for the Lease before acting; step down (and end) when it is lost.
    let mut shutdown = Box::pin(shutdown);
    let elector = if args.enable_leader_election {
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "flagger".into());
        let identity = format!("{host}_{}", uuid::Uuid::new_v4());
        // Flagger's rule: the watched namespace when there is one.
        let lease_ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| args.leader_election_namespace.clone());
        let elector = crate::leader::Elector::new(
            client.clone(),
            &lease_ns,
            identity,
            args.leader_election_lease_duration,
            fence.clone().unwrap_or_else(|| {
                Arc::new(crate::leader::Fence::new(
                    args.leader_election_lease_duration,
                ))
            }),
        );
        tracing::info!(
            "waiting for leadership (Lease {lease_ns}/{})",
            crate::leader::LEASE_NAME
        );
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut shutdown => return Ok(()),
        }
        tracing::info!(identity = elector.identity(), "acquired leadership");
        Some(Arc::new(elector))
    } else {
        None
    };
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Renewal runs in its own task (its futures are not Sync); it signals a loss.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renewal = elector.clone().map(|e| {
        tokio::spawn(async move {
            e.hold().await;
            let _ = lost_tx.send(());
        })
    });
    let stop = {
        let lost = lost.clone();
        let electing = elector.is_some();
        async move {
            if electing {
                tokio::select! {
                    _ = &mut shutdown => {}
                    Ok(()) = lost_rx => {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        tracing::error!("leadership lost; stopping");
                    }
                }
            } else {
                shutdown.await
            }
        }
    };

    let cache::Feeds {
        deployments,
        daemonsets,
        configmaps,
        secrets,
        services,
        hpas,
        metric_templates,
        alert_providers,
    } = feeds;
    cache::drive(hpas);
    cache::drive(metric_templates);
    cache::drive(alert_providers);

    let controller = Controller::new(canaries, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(args.threadiness));
    let store = controller.store();
    let counting = ctx
        .metrics
        .count_canaries(store.clone(), args.control_loop_interval);

    let by_target = |kind: &'static str| {
        let store = store.clone();
        move |obj: &dyn ObjectView| -> Vec<ObjectRef<Canary>> {
            let ns = obj.object_namespace();
            let name = obj.object_name();
            let mut refs: Vec<ObjectRef<Canary>> = obj.canary_owners(&ns);
            refs.extend(
                store
                    .state()
                    .iter()
                    .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|c| c.spec.target_ref.kind == kind && c.spec.target_ref.name == name)
                    .map(|c| ObjectRef::from_obj(&**c)),
            );
            refs
        }
    };
    // Services: owned ones (generated), and any named like a canary's apex, `-primary` or
    // `-canary` Service (an adopted apex Service has no owner reference).
    let service_store = store.clone();
    let service_map = move |svc: &Service| -> Vec<ObjectRef<Canary>> {
        let ns = svc.object_namespace();
        let name = svc.object_name();
        let mut refs = svc.canary_owners(&ns);
        refs.extend(
            service_store
                .state()
                .iter()
                .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
                .filter(|c| {
                    let apex = c
                        .spec
                        .service
                        .as_ref()
                        .and_then(|s| s.name.clone())
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| c.spec.target_ref.name.clone());
                    name == apex
                        || name == format!("{apex}-primary")
                        || name == format!("{apex}-canary")
                })
                .map(|c| ObjectRef::from_obj(&**c)),
        );
        refs
    };
    let deployment_map = by_target("Deployment");
    let daemonset_map = by_target("DaemonSet");
    let cfg_ctx = ctx.clone();
    let secret_ctx = ctx.clone();

    let ready_ctx = ctx.clone();
    let ready_store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = cache::wait_ready(&ready_store).await {
            tracing::error!(error = %e, "canary cache never became ready");
            return;
        }
        match ready_ctx.caches.wait_until_ready().await {
            Ok(()) => {
                ready_ctx.set_ready();
                tracing::info!("caches synced; controller ready");
            }
            Err(e) => tracing::error!(error = %e, "a watch cache never became ready"),
        }
    });

    controller
        .watches_stream(deployments, move |d: Deployment| deployment_map(&d))
        .watches_stream(daemonsets, move |d: DaemonSet| daemonset_map(&d))
        .watches_stream(configmaps, move |c: ConfigMap| {
            let key = ConfigIndex::key(
                &c.namespace().unwrap_or_default(),
                "configmap",
                &c.name_any(),
            );
            cfg_ctx.configs.canaries(&key)
        })
        .watches_stream(secrets, move |s: Secret| {
            let key = ConfigIndex::key(&s.namespace().unwrap_or_default(), "secret", &s.name_any());
            secret_ctx.configs.canaries(&key)
        })
        .watches_stream(services, move |s: Service| service_map(&s))
        .graceful_shutdown_on(stop)
        .run(canary::reconcile, canary::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    counting.abort();
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("leader election lost");
    }
    if let Some(task) = renewal {
        task.abort();
    }
    if let Some(e) = elector {
        e.release().await;
        tracing::info!("leadership released");
    }
    Ok(())
}

/// What the target mapper needs from a watched workload.
trait ObjectView {
    fn object_namespace(&self) -> String;
    fn object_name(&self) -> String;
    /// Canaries that own this object as controller (e.g. a `-primary` Deployment).
    fn canary_owners(&self, ns: &str) -> Vec<ObjectRef<Canary>>;
}

impl<K: Resource> ObjectView for K {
    fn object_namespace(&self) -> String {
        self.meta().namespace.clone().unwrap_or_default()
    }
    fn object_name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }
    fn canary_owners(&self, ns: &str) -> Vec<ObjectRef<Canary>> {
        self.meta()
            .owner_references
            .iter()
            .flatten()
            .filter(|o| {
                o.kind == "Canary"
                    && o.api_version.starts_with("flagger.app/")
                    && o.controller == Some(true)
            })
            .map(|o| ObjectRef::new(&o.name).within(ns))
            .collect()
    }
}

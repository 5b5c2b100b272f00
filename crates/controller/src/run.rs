//! Wiring: client, watches, the HTTP server and the controller loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flagger_api::Canary;
use flagger_core::validate::ValidationContext;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, Config, Resource, ResourceExt};
use prometheus_client::registry::Registry;

use crate::args::Args;
use crate::cache::{self, Packed};
use crate::canary;
use crate::canary_index::CanaryIndex;
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
        // client-go's token bucket: `qps` sustained, bursts of `burst`.
        let limit =
            crate::ratelimit::TokenBucketLayer::new(args.kubeconfig_qps, args.kubeconfig_burst);
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
    let stop = shutdown_signal();
    tracing::info!(
        "Starting flagger-rs version {} (mesh provider {}); SIGTERM stops it",
        env!("CARGO_PKG_VERSION"),
        args.mesh_provider.as_str()
    );
    let client = client(&args).await?;
    serve(client, args, stop).await
}

/// SIGINT or SIGTERM. The handlers are installed here, before the controller starts, so a
/// signal that comes early stops it cleanly instead of killing it.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                let _ = one.recv().await;
            }
            (Err(e), Err(_)) => {
                tracing::warn!("cannot listen for SIGINT/SIGTERM ({e}); stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
}

/// How long a stopping controller lets the reconciles in progress finish before it drops them.
/// Dropping a tick is safe (effects gate the status: the next leader redoes what it did not
/// record), so the bound is short: well within Kubernetes' default grace period of 30 s, which
/// leaves time to release the Lease before the kubelet sends SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long giving the Lease back may take on the way out (the API server may be slow or down).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A stop request every stage of the controller can wait on (starting, waiting for the Lease,
/// waiting for the caches, reconciling); clones share it.
#[derive(Clone)]
struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// A stop requested when `signal` completes.
    fn on(signal: impl Future<Output = ()> + Send + 'static) -> Stop {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// Completes once a stop is requested (or nobody can request one any more).
    async fn requested(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Runs the controller with a given client until `shutdown` completes.
///
/// A stop is honoured at every stage, within a bound: while the first API call is slow, while
/// waiting for the Lease, while the Canary cache has not synced (the controller then has no
/// reconcile to finish and ends at once), and while reconciles run ([`SHUTDOWN_GRACE`]). The
/// Lease is then released.
pub async fn serve(
    client: Client,
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = Stop::on(shutdown);
    let canaries: Api<Canary> = cache::scoped(&client, args.namespace.as_deref());
    let first = ListParams::default().limit(1);
    tokio::select! {
        listed = canaries.list(&first) => {
            listed.context("Canary CRD is not registered")?;
        }
        _ = stop.clone().requested() => {
            tracing::info!("stopping before the API server answered the first Canary list");
            return Ok(());
        }
    }

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
        autoscaler_sync_immediate: args.autoscaler_sync == "immediate",
        caps: flagger_core::queue::Caps {
            cluster: Some(args.max_concurrent_canaries).filter(|n| *n > 0),
            namespace: Some(args.max_concurrent_canaries_per_namespace).filter(|n| *n > 0),
            shard: None,
        },
    };
    let ns = args.namespace.as_deref();
    if crate::memory::return_free_pages() {
        tracing::debug!("jemalloc returns freed pages in the background");
    }
    let (caches, feeds) = cache::build(&client, ns);
    let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
    let http = Clients::new().context("building HTTP clients")?;
    let outbox = crate::alerts::Outbox::start(http.verified.clone());
    // Leader election's fence: renewals are recorded in it, writes check it. With `-shards`,
    // one fence per shard instead.
    let electing = args.enable_leader_election && args.shards == 0;
    let shards = (args.shards > 0).then(|| {
        Arc::new(crate::shard::Shards::new(
            args.shards,
            args.leader_election_lease_duration,
        ))
    });
    let fence = electing.then(|| {
        Arc::new(crate::leader::Fence::new(
            args.leader_election_lease_duration,
        ))
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        caches: caches.clone(),
        objects: crate::watched::Objects::new(client.clone(), ns),
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
        shards: shards.clone(),
        refresh: Default::default(),
        canaries: Default::default(),
        admission: Default::default(),
        wake,
    });

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("binding port {}", args.port))?;
    let app = crate::server::router(registry, ctx.clone());
    let http_server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    // A replica's identity on Leases: pod name and a random suffix.
    let identity = {
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "flagger".into());
        format!("{host}_{}", uuid::Uuid::new_v4())
    };
    // Flagger's rule: the watched namespace when there is one.
    let lease_ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| args.leader_election_namespace.clone());
    // Sharding: the shard Leases are held, claimed and given back in the background; a
    // reconcile acts only on the canaries of the shards held.
    let coordinator = shards.clone().map(|shards| {
        tracing::info!(
            identity = %identity,
            "sharding: {} shards on Leases {lease_ns}/{}<i>",
            shards.count(),
            flagger_core::shard::SHARD_LEASE_PREFIX
        );
        Arc::new(crate::shard::Coordinator::new(
            client.clone(),
            &lease_ns,
            identity.clone(),
            args.leader_election_lease_duration,
            shards,
        ))
    });
    // Leader election: wait for the Lease before acting; step down (and end) when it is lost.
    let elector = if electing {
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
            _ = stop.clone().requested() => {
                http_server.abort();
                return Ok(());
            }
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
    // The controller halts on a stop request or when the Lease is lost, whichever comes first.
    let halt = {
        let lost = lost.clone();
        let stop = stop.clone();
        Stop::on(async move {
            if electing {
                tokio::select! {
                    _ = stop.requested() => {}
                    Ok(()) = lost_rx => {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        tracing::error!("leadership lost; stopping");
                    }
                }
            } else {
                stop.requested().await
            }
        })
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
    // Tasks that end with the controller.
    let mut background = vec![
        http_server,
        cache::drive(metric_templates),
        cache::drive(alert_providers),
    ];

    // The Canary cache keeps no `managedFields` and no kubectl last-applied copy (see
    // `cache::trim_canary`).
    let (store, canary_writer) = kube::runtime::reflector::store();
    // Which canaries name a target, a Service or an HPA: the watch mappers below look events up
    // here instead of scanning the fleet.
    let index = Arc::new(CanaryIndex::default());
    let indexing = index.clone();
    let canary_feed = watcher(canaries, watcher::Config::default())
        .modify(cache::trim_canary)
        .map(move |event| {
            if let Ok(e) = &event {
                indexing.observe(e);
            }
            event
        })
        .reflect(canary_writer)
        .applied_objects();
    let controller = Controller::for_stream(canary_feed, store.clone())
        .with_config(controller::Config::default().concurrency(args.threadiness));
    let _ = ctx.canaries.set(store.clone());
    if let Some(coordinator) = coordinator.clone() {
        let ctx = ctx.clone();
        background.push(tokio::spawn(async move {
            coordinator.run(|shard| ctx.shard_gained(shard)).await
        }));
    }
    let counting = ctx
        .metrics
        .count_canaries(store.clone(), args.control_loop_interval);

    let by_target = |kind: &'static str| {
        let index = index.clone();
        move |obj: &dyn ObjectView| -> Vec<ObjectRef<Canary>> {
            let ns = obj.object_namespace();
            let name = obj.object_name();
            let mut refs: Vec<ObjectRef<Canary>> = obj.canary_owners(&ns);
            refs.extend(index.lookup(&ns, kind, &name));
            refs
        }
    };
    // Services: owned ones (generated), and any named like a canary's apex, `-primary` or
    // `-canary` Service (an adopted apex Service has no owner reference).
    let service_index = index.clone();
    let service_map = move |svc: &Packed<Service>| -> Vec<ObjectRef<Canary>> {
        let ns = svc.object_namespace();
        let name = svc.object_name();
        let mut refs = svc.canary_owners(&ns);
        refs.extend(service_index.lookup(&ns, "Service", &name));
        refs
    };
    // `-autoscaler-sync=immediate`: a target HPA's change triggers its canaries.
    let hpa_index = index.clone();
    let hpa_map = move |hpa: &Packed<HorizontalPodAutoscaler>| -> Vec<ObjectRef<Canary>> {
        hpa_index.lookup(
            &hpa.object_namespace(),
            "HorizontalPodAutoscaler",
            &hpa.object_name(),
        )
    };
    let controller = if args.autoscaler_sync == "immediate" {
        controller.watches_stream(hpas, move |h: Packed<HorizontalPodAutoscaler>| hpa_map(&h))
    } else {
        background.push(cache::drive(hpas));
        controller
    };
    let deployment_map = by_target("Deployment");
    let daemonset_map = by_target("DaemonSet");
    let cfg_ctx = ctx.clone();
    let secret_ctx = ctx.clone();

    let ready_ctx = ctx.clone();
    let objects = ctx.objects.clone();
    let ready_store = store.clone();
    // Until the Canary cache has synced, kube-runtime holds reconciles back and a graceful
    // shutdown would wait for the sync forever: a stop then ends the controller at once.
    let canaries_synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let synced = canaries_synced.clone();
    background.push(tokio::spawn(async move {
        if let Err(e) = cache::wait_ready(&ready_store).await {
            tracing::error!(error = %e, "canary cache never became ready");
            return;
        }
        synced.store(true, std::sync::atomic::Ordering::SeqCst);
        match ready_ctx.caches.wait_until_ready().await {
            Ok(()) => {
                ready_ctx.set_ready();
                tracing::info!("caches synced; controller ready");
            }
            Err(e) => tracing::error!(error = %e, "a watch cache never became ready"),
        }
    }));

    let running = controller
        .watches_stream(deployments, move |d: Packed<Deployment>| deployment_map(&d))
        .watches_stream(daemonsets, move |d: Packed<DaemonSet>| daemonset_map(&d))
        .watches_stream(configmaps, move |c: Packed<ConfigMap>| {
            let key = ConfigIndex::key(
                &c.namespace().unwrap_or_default(),
                "configmap",
                &c.name_any(),
            );
            cfg_ctx.configs.canaries(&key)
        })
        .watches_stream(secrets, move |s: Packed<Secret>| {
            let key = ConfigIndex::key(&s.namespace().unwrap_or_default(), "secret", &s.name_any());
            secret_ctx.configs.canaries(&key)
        })
        .watches_stream(services, move |s: Packed<Service>| service_map(&s))
        .reconcile_on(futures::stream::unfold(woken, |mut rx| async move {
            rx.recv().await.map(|key| (key, rx))
        }))
        .graceful_shutdown_on(halt.clone().requested())
        .run(canary::reconcile, canary::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
    let mut running = Box::pin(running);
    tokio::select! {
        _ = &mut running => {}
        _ = halt.requested() => {
            if !canaries_synced.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::info!("stopping before the Canary cache synced");
            } else if tokio::time::timeout(SHUTDOWN_GRACE, &mut running).await.is_err() {
                tracing::warn!(
                    "reconciles still running {}s after the stop; dropping them (the next leader \
                     redoes their step)",
                    SHUTDOWN_GRACE.as_secs()
                );
            }
        }
    }
    // Dropping the controller's stream cancels what is left of its reconciles.
    drop(running);
    counting.abort();
    for task in background {
        task.abort();
    }
    objects.stop();
    if let Some(task) = renewal {
        task.abort();
    }
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("leader election lost");
    }
    if let Some(c) = coordinator {
        match tokio::time::timeout(RELEASE_TIMEOUT, c.release_all()).await {
            Ok(()) => tracing::info!("shard Leases released"),
            Err(_) => tracing::warn!(
                "the shard Leases could not be released within {}s; other replicas take \
                 them over when they expire",
                RELEASE_TIMEOUT.as_secs()
            ),
        }
    }
    if let Some(e) = elector {
        match tokio::time::timeout(RELEASE_TIMEOUT, e.release()).await {
            Ok(()) => tracing::info!("leadership released"),
            Err(_) => tracing::warn!(
                "the Lease could not be released within {}s; another replica takes over when \
                 it expires",
                RELEASE_TIMEOUT.as_secs()
            ),
        }
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
            .filter(|o| crate::owner::is_canary_controller(o))
            .map(|o| ObjectRef::new(&o.name).within(ns))
            .collect()
    }
}

//! A load generator through localkube's data plane (a load tester's `hey -q`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Env;

/// Requests through the data plane to `url`, about `rps` a second, each on its own task (slow
/// answers do not slow the rate), until dropped.
pub struct Load(Arc<AtomicBool>);

impl Load {
    pub fn start(env: &Env, url: &'static str, rps: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let proxy = env.kube.proxy_url().expect("data plane");
        let http = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(&proxy).expect("proxy"))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let s = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / rps));
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let http = http.clone();
                tokio::spawn(async move {
                    let _ = http.get(url).send().await;
                });
            }
        });
        Load(stop)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

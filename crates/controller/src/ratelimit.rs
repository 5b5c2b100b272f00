//! The client-side limit on requests to the API server (`-kubeconfig-qps`,
//! `-kubeconfig-burst`), as client-go's token bucket: a bucket of `burst` tokens refilled at
//! `qps` per second; a request takes a token, or waits until the next one is in (1/qps).
//!
//! Why not tower's `RateLimit`: it is a fixed window (`burst` requests per `burst / qps`
//! seconds, 2.5 s with the defaults). Once a burst of requests used the window's budget, the
//! next request waited for the rest of the window, and behind it every request of the client
//! (kube's client serializes them through one buffer): the controller's reaction tail, one
//! `set image` in 50 taking 1.4-1.8 s (issue 21). Written here because it is a dozen lines of
//! arithmetic around a timer and a well-kept limiter crate would still need this tower adapter.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Wraps a service in a [`TokenBucket`].
#[derive(Clone, Copy, Debug)]
pub struct TokenBucketLayer {
    qps: f64,
    burst: u64,
}

impl TokenBucketLayer {
    /// `qps` sustained (must be > 0), bursts of up to `burst` (at least 1).
    pub fn new(qps: f64, burst: u64) -> Self {
        Self {
            qps,
            burst: burst.max(1),
        }
    }
}

impl<S> Layer<S> for TokenBucketLayer {
    type Service = TokenBucket<S>;

    fn layer(&self, inner: S) -> TokenBucket<S> {
        TokenBucket {
            inner,
            qps: self.qps,
            burst: self.burst as f64,
            tokens: self.burst as f64,
            refilled: Instant::now(),
            taken: false,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

/// A service that lets requests through at `qps`, with bursts of `burst`.
pub struct TokenBucket<S> {
    inner: S,
    qps: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// A token is held for the next call.
    taken: bool,
    sleep: Pin<Box<Sleep>>,
}

impl<S> TokenBucket<S> {
    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
    }
}

impl<S, Req> Service<Req> for TokenBucket<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.taken {
            let now = Instant::now();
            self.refill(now);
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                self.taken = true;
                break;
            }
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.qps);
            self.sleep.as_mut().reset(now + wait);
            ready!(self.sleep.as_mut().poll(cx));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.taken = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// Sends `n` requests one after another through `svc`; returns the longest wait of one
    /// request and the total time (tokio's paused clock: exact, no sleeping).
    async fn drive<S>(mut svc: S, n: usize) -> (Duration, Duration)
    where
        S: Service<(), Response = (), Error = std::convert::Infallible>,
    {
        let start = Instant::now();
        let mut longest = Duration::ZERO;
        for _ in 0..n {
            let t = Instant::now();
            svc.ready().await.expect("ready");
            svc.call(()).await.expect("call");
            longest = longest.max(t.elapsed());
        }
        (longest, start.elapsed())
    }

    fn echo() -> impl Service<(), Response = (), Error = std::convert::Infallible> {
        tower::service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) })
    }

    /// The defaults (100 qps, burst 250) and 300 requests in a row: the 50 over the burst wait
    /// 10 ms each with the token bucket; with tower's fixed window the 251st waits for the rest
    /// of a 2.5 s window.
    #[tokio::test(start_paused = true)]
    async fn a_burst_over_the_budget_waits_one_token_not_a_window() {
        let (longest, total) = drive(TokenBucketLayer::new(100.0, 250).layer(echo()), 300).await;
        println!("token bucket: longest wait {longest:?}, 300 requests in {total:?}");
        assert!(longest <= Duration::from_millis(11), "{longest:?}");
        assert!(
            (Duration::from_millis(490)..=Duration::from_millis(510)).contains(&total),
            "{total:?}"
        );

        let window = Duration::from_secs_f64(250.0 / 100.0);
        let fixed = tower::limit::RateLimitLayer::new(250, window).layer(echo());
        let (longest, total) = drive(fixed, 300).await;
        println!("tower's fixed window: longest wait {longest:?}, 300 requests in {total:?}");
        assert!(longest >= Duration::from_secs(2), "{longest:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_held_over_time_and_the_bucket_refills_when_idle() {
        let mut svc = TokenBucketLayer::new(10.0, 5).layer(echo());
        let (_, total) = drive(&mut svc, 25).await;
        // 5 at once, then 20 at 10 per second.
        assert!((1990..=2010).contains(&total.as_millis()), "{total:?}");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (longest, _) = drive(&mut svc, 5).await;
        assert_eq!(longest, Duration::ZERO, "a full bucket again");
    }
}

//! A minimal HTTP server for benchmarks: answers `GET /` with a short body. Binds 127.0.0.1 on
//! the given port (default: any free port) and prints `listening on 127.0.0.1:PORT`.
//!
//! Usage: `bench_server [PORT] [WORKER_THREADS]`

use axum::Router;
use axum::routing::get;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let threads: usize = args.next().map(|p| p.parse()).transpose()?.unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new().route("/", get(|| async { "hello from the bench server\n" }));
        axum::serve(listener, app).await?;
        Ok(())
    })
}

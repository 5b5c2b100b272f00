//! Serves localkube until interrupted: `cargo run -p localkube --example serve -- [ADDR] [KUBECONFIG]`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let kubeconfig = args.next().unwrap_or_else(|| "localkube.kubeconfig".into());
    let handle = localkube::Server::start(localkube::Config {
        addr,
        ..Default::default()
    })
    .await?;
    handle.write_kubeconfig(std::path::Path::new(&kubeconfig))?;
    println!(
        "localkube serving on {} (kubeconfig: {kubeconfig})",
        handle.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

//! `tern serve`: a production node on the store and bus its config names. The first
//! account of such a deployment comes from `tern admin bootstrap` (`crate::admin`).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::node;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The node's TOML configuration: `[node]`, `[store]`, `[bus]`, `[sim]`, `[webhooks]`…
    #[arg(long)]
    config: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the SMPP server for customers (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:2775")]
    smpp_listen: SocketAddr,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = node::load_config(Some(&args.config))?;
    let metrics = node::install_metrics()?;
    let backend = node::open_store(&config, None).await?;
    let queue = node::open_queue(&config).await?;
    let listener = node::listen(args.listen).await?;
    let smpp = node::listen(args.smpp_listen).await?;
    tracing::info!(
        node = %config.node.name,
        region = %config.node.region,
        addr = %listener.local_addr()?,
        smpp = %smpp.local_addr()?,
        "tern serve is up"
    );
    let listeners = node::Listeners {
        http: listener,
        smpp,
    };
    node::run(
        config,
        Some(args.config.clone()),
        backend,
        queue,
        listeners,
        metrics,
    )
    .await
}

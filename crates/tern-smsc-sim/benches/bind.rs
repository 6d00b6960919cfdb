//! `cargo bench -p tern-smsc-sim`: submit_sm/s over one transceiver bind with receipts, at
//! window 10 and window 100, against an in-process simulator on loopback (or against
//! `TERN_SMSC_ADDR` if set, e.g. a `tern sim smsc` in another process).
//!
//! `TERN_BENCH_COUNT` sets the submits per run (default 200,000); `TERN_BENCH_WINDOWS` the
//! windows (default `10,100`); `TERN_BENCH_THREADS` the runtime's worker threads (default:
//! all cores).

use std::env;

use tern_smsc_sim::{BenchOptions, Smsc, SmscConfig, bench_bind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not use.
    let count: u64 = env::var("TERN_BENCH_COUNT").map_or(Ok(200_000), |v| v.parse())?;
    let windows: Vec<usize> = env::var("TERN_BENCH_WINDOWS")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Ok(threads) = env::var("TERN_BENCH_THREADS") {
        runtime.worker_threads(threads.parse()?);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        let (addr, sim) = match env::var("TERN_SMSC_ADDR") {
            Ok(addr) => (addr, None),
            Err(_) => {
                let sim = Smsc::start(SmscConfig {
                    listen: "127.0.0.1:0".into(),
                    ..SmscConfig::default()
                })
                .await?;
                (sim.addr().to_string(), Some(sim))
            }
        };
        for window in windows {
            let opts = BenchOptions {
                window,
                count,
                ..BenchOptions::default()
            };
            let figures = bench_bind(&addr, &opts).await?;
            println!("{figures}");
        }
        if let Some(sim) = sim {
            println!("simulator: {}", sim.stats().summary());
            sim.shutdown().await;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

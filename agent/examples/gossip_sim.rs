//! Runs the gossip simulation at any size and prints the figures: failure
//! detection, false deaths under loss, convergence after a join and
//! propagation of a published change.
//!
//! cargo run --release -p shoal-agent --example gossip_sim -- --nodes 1000 --seed 7
//!
//! Options: --nodes N, --seed S, --runs R, --only detect|false|join|spread,
//! --loss F and --delay-ms MS (the link for every measurement; the false
//! death run defaults to 10% and 50 ms), --minutes M (false death run; 5,
//! or 1 from 500 nodes: it simulates every datagram of every node),
//! and tuning overrides --probe-ms, --rtt-ms, --suspicion, --gossip-ms,
//! --min-tx, --tx-mult, --refute-rounds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shoal_agent::gossip::sim::{
    measure_detection, measure_false_deaths, measure_join, measure_propagation, LinkModel,
    SimConfig, Summary,
};

struct Options {
    config: SimConfig,
    runs: usize,
    only: Option<String>,
    lossy: LinkModel,
    minutes: f64,
}

fn parse() -> Result<Options> {
    let mut config = SimConfig::new(1000, 7);
    let mut runs = None;
    let mut only = None;
    let mut link: Option<LinkModel> = None;
    let (mut loss, mut delay_ms) = (None, None);
    let mut minutes = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || -> Result<f64> {
            value
                .parse::<f64>()
                .with_context(|| format!("{flag} {value}: not a number"))
        };
        let millis = || -> Result<Duration> { Ok(Duration::from_secs_f64(number()? / 1000.0)) };
        let m = &mut config.membership;
        match flag.as_str() {
            "--nodes" => config.nodes = number()? as usize,
            "--seed" => config.seed = number()? as u64,
            "--runs" => runs = Some(number()? as usize),
            "--only" => only = Some(value),
            "--loss" => loss = Some(number()?),
            "--delay-ms" => delay_ms = Some(millis()?),
            "--minutes" => minutes = Some(number()?),
            "--probe-ms" => m.probe_period = millis()?,
            "--rtt-ms" => m.probe_rtt = millis()?,
            "--suspicion" => m.suspicion_multiplier = number()?,
            "--gossip-ms" => m.gossip_interval = millis()?,
            "--min-tx" => m.min_transmissions = number()? as u8,
            "--tx-mult" => m.transmission_multiplier = number()?,
            "--refute-rounds" => m.refute_rounds = number()? as u8,
            _ => bail!("unknown option {flag}; see the top of examples/gossip_sim.rs"),
        }
    }
    if loss.is_some() || delay_ms.is_some() {
        link = Some(LinkModel::lossy(
            loss.unwrap_or(0.0),
            delay_ms.unwrap_or(Duration::from_micros(200)),
        ));
    }
    if let Some(link) = link {
        config.link = link;
    }
    let lossy = link.unwrap_or(LinkModel::lossy(0.10, Duration::from_millis(50)));
    let large = config.nodes >= 500;
    let runs = runs.unwrap_or(if large { 3 } else { 20 });
    let minutes = minutes.unwrap_or(if large { 1.0 } else { 5.0 });
    Ok(Options {
        config,
        runs,
        only,
        lossy,
        minutes,
    })
}

fn report(label: &str, values: &[Option<Duration>], started: Instant) {
    let failed = values.iter().filter(|v| v.is_none()).count();
    match Summary::of(values.iter().flatten().copied()) {
        Some(summary) => println!(
            "{label}: {summary}, {failed} timed out [{:.1?}]",
            started.elapsed()
        ),
        None => println!("{label}: every run timed out [{:.1?}]", started.elapsed()),
    }
}

fn main() -> Result<()> {
    let options = parse()?;
    let config = &options.config;
    let wants = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    let n = config.nodes;
    println!(
        "{n} nodes, seed {}, link {:?}, {:?}",
        config.seed, config.link, config.membership
    );
    if wants("detect") {
        let started = Instant::now();
        let runs = measure_detection(config, options.runs, Duration::from_secs(60));
        let first: Vec<_> = runs.iter().map(|r| r.map(|r| r.first)).collect();
        let all: Vec<_> = runs.iter().map(|r| r.map(|r| r.everywhere)).collect();
        report("crash -> first survivor sees it dead", &first, started);
        report("crash -> every survivor sees it dead", &all, started);
    }
    if wants("false") {
        let started = Instant::now();
        let mut lossy = config.clone();
        lossy.link = options.lossy;
        let run = measure_false_deaths(&lossy, Duration::from_secs_f64(60.0 * options.minutes));
        println!(
            "{} min at {:.0}% loss, {:?} one way: {} false deaths, {} suspicions, {}/{} datagrams lost [{:.1?}]",
            options.minutes,
            options.lossy.loss * 100.0,
            options.lossy.delay,
            run.false_deaths,
            run.suspicions,
            run.datagrams_lost,
            run.datagrams_sent,
            started.elapsed()
        );
    }
    if wants("join") {
        let started = Instant::now();
        let joins = measure_join(config, options.runs, Duration::from_secs(120));
        report("join -> membership converged", &joins, started);
    }
    if wants("spread") {
        let started = Instant::now();
        let spread = measure_propagation(config, options.runs, Duration::from_secs(60));
        report("published endpoint -> every table", &spread, started);
    }
    Ok(())
}

//! A pool of worker threads reading jobs from a channel. Every job runs under a context of
//! its own with a timeout; one cancel of the pool's context stops the jobs in flight and
//! the workers.
//!
//! Each worker waits on two channels at once with `crossbeam_channel::select!`: the job
//! queue, and `ctxkit::crossbeam::done_receiver`, which becomes ready when the pool's context
//! is done — Go's `select { case job := <-jobs: ... case <-ctx.Done(): return }`.
//!
//! ```text
//! cargo run -p ctxkit --example worker_pool --features crossbeam-channel
//! ```

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded};
use ctxkit::{Context, Error};

/// How long any single job may take.
const JOB_TIMEOUT: Duration = Duration::from_millis(100);

struct Job {
    id: u32,
    /// How long the work takes if nothing stops it.
    work: Duration,
}

struct Report {
    worker: usize,
    job: u32,
    result: Result<(), Error>,
}

/// Stands for real work that checks its context: it finishes after `job.work`, unless the
/// job's context is done first (its timeout, or the pool shutting down).
fn run(ctx: &Context, job: &Job) -> Result<(), Error> {
    match ctx.wait_timeout(job.work) {
        None => Ok(()),
        Some(err) => Err(err),
    }
}

fn main() {
    let start = Instant::now();
    let (pool, shutdown) = Context::background().with_cancel();
    let (jobs_tx, jobs) = bounded::<Job>(8);
    let (reports_tx, reports) = unbounded::<Report>();

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let pool = pool.clone();
            let jobs = jobs.clone();
            let reports = reports_tx.clone();
            thread::spawn(move || {
                let stop = ctxkit::crossbeam::done_receiver(&pool);
                loop {
                    select! {
                        recv(stop) -> _ => return,
                        recv(jobs) -> job => {
                            let Ok(job) = job else { return }; // the queue is closed
                            // The job's own deadline; a pool cancel reaches it too.
                            let (ctx, _cancel) = pool.with_timeout(JOB_TIMEOUT);
                            let result = run(&ctx, &job);
                            let _ = reports.send(Report { worker, job: job.id, result });
                        }
                    }
                }
            })
        })
        .collect();
    drop(reports_tx);

    // Round 1: eight jobs, every third one too slow for its timeout.
    for id in 0..8 {
        let work = if id % 3 == 2 { 500 } else { 10 };
        jobs_tx
            .send(Job {
                id,
                work: Duration::from_millis(work),
            })
            .unwrap();
    }
    for _ in 0..8 {
        print(reports.recv().unwrap(), start);
    }

    // Round 2: four long jobs, then one cancel stops them and every worker.
    for id in 8..12 {
        jobs_tx
            .send(Job {
                id,
                work: Duration::from_secs(60),
            })
            .unwrap();
    }
    thread::sleep(Duration::from_millis(30));
    println!(
        "{:>5} ms  shutting the pool down",
        start.elapsed().as_millis()
    );
    shutdown.cancel();
    for w in workers {
        w.join().unwrap();
    }
    for report in reports.try_iter() {
        print(report, start);
    }
    println!(
        "{:>5} ms  all workers stopped: {}",
        start.elapsed().as_millis(),
        pool.err().unwrap()
    );
}

fn print(report: Report, start: Instant) {
    let outcome = match report.result {
        Ok(()) => "done".to_string(),
        Err(err) => format!("stopped: {err}"),
    };
    println!(
        "{:>5} ms  worker {} job {:>2}: {outcome}",
        start.elapsed().as_millis(),
        report.worker,
        report.job
    );
}

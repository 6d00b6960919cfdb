//! The in-process queue: a ready list per kind plus one timer list for jobs due later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use crate::jetstream::check_name;
use crate::{
    BusError, EVENT_BUFFER, Event, Job, JobKind, Queue, Request, RequestError, SERVE_BUFFER,
};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Default)]
struct State {
    ready: HashMap<JobKind, VecDeque<Job>>,
    /// Jobs due later, ordered by (run_at, id).
    delayed: BinaryHeap<Reverse<(i64, i64, DelayedJob)>>,
    closed: bool,
}

/// Wrapper so the heap can order by time and id alone.
struct DelayedJob(Job);

impl PartialEq for DelayedJob {
    fn eq(&self, o: &Self) -> bool {
        self.0.id == o.0.id
    }
}
impl Eq for DelayedJob {}
impl PartialOrd for DelayedJob {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for DelayedJob {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&o.0.id)
    }
}

pub struct InProcessQueue {
    state: Mutex<State>,
    /// Wakes workers of a kind when jobs become ready.
    ready_signal: HashMap<JobKind, Notify>,
    /// Wakes the timer when an earlier deadline arrives.
    timer_signal: Notify,
    events: tokio::sync::broadcast::Sender<Event>,
    /// Servers by service; requests take turns among a service's servers.
    services: Mutex<HashMap<String, Vec<mpsc::Sender<Request>>>>,
    turn: AtomicUsize,
}

impl Default for InProcessQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessQueue {
    pub fn new() -> Self {
        InProcessQueue {
            state: Mutex::new(State::default()),
            ready_signal: JobKind::ALL
                .into_iter()
                .map(|k| (k, Notify::new()))
                .collect(),
            timer_signal: Notify::new(),
            events: tokio::sync::broadcast::Sender::new(EVENT_BUFFER),
            services: Mutex::default(),
            turn: AtomicUsize::new(0),
        }
    }

    /// One live server of `service`, taking turns; servers that stopped are forgotten.
    fn server(&self, service: &str) -> Option<mpsc::Sender<Request>> {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let servers = services.get_mut(service)?;
        servers.retain(|s| !s.is_closed());
        if servers.is_empty() {
            services.remove(service);
            return None;
        }
        let n = self.turn.fetch_add(1, Ordering::Relaxed) % servers.len();
        Some(servers[n].clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a worker panicked while holding it; the queue's data
        // is still consistent because every critical section is a single push or pop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal(&self, kind: JobKind, n: usize) {
        if let Some(s) = self.ready_signal.get(&kind) {
            for _ in 0..n {
                s.notify_one();
            }
        }
    }

    /// Moves due jobs to the ready lists; returns the next deadline, if any.
    fn promote_due(&self, now: i64) -> Option<i64> {
        let mut woken = Vec::new();
        let next = {
            let mut st = self.lock();
            while let Some(Reverse((at, _, _))) = st.delayed.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, _, DelayedJob(job)))) = st.delayed.pop() {
                    woken.push(job.kind);
                    st.ready.entry(job.kind).or_default().push_back(job);
                }
            }
            st.delayed.peek().map(|Reverse((at, _, _))| *at)
        };
        for k in woken {
            self.signal(k, 1);
        }
        next
    }

    /// Runs the timer that releases delayed jobs; spawn it once per queue.
    pub async fn run_timer(self: std::sync::Arc<Self>) {
        loop {
            if self.lock().closed {
                return;
            }
            let next = self.promote_due(now_ms());
            match next {
                Some(at) => {
                    let wait = (at - now_ms()).max(0) as u64;
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                        _ = self.timer_signal.notified() => {}
                    }
                }
                None => self.timer_signal.notified().await,
            }
        }
    }
}

#[async_trait]
impl Queue for InProcessQueue {
    fn emit(&self, event: Event) {
        // No subscriber is not an error: nobody is listening.
        let _ = self.events.send(event);
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn publish(&self, jobs: Vec<Job>) {
        let now = now_ms();
        let mut counts: HashMap<JobKind, usize> = HashMap::new();
        let mut delayed = false;
        {
            let mut st = self.lock();
            for job in jobs {
                if job.run_at > now {
                    delayed = true;
                    st.delayed
                        .push(Reverse((job.run_at, job.id, DelayedJob(job))));
                } else {
                    *counts.entry(job.kind).or_default() += 1;
                    st.ready.entry(job.kind).or_default().push_back(job);
                }
            }
        }
        for (k, n) in counts {
            self.signal(k, n);
        }
        if delayed {
            self.timer_signal.notify_one();
        }
    }

    async fn next(&self, kind: JobKind) -> Option<Job> {
        let signal = self.ready_signal.get(&kind)?;
        loop {
            let notified = signal.notified();
            {
                let mut st = self.lock();
                // Once closed, nothing more is handed out: work not yet taken stays in the
                // store and is published again on the next start.
                if st.closed {
                    return None;
                }
                if let Some(job) = st.ready.get_mut(&kind).and_then(|q| q.pop_front()) {
                    return Some(job);
                }
            }
            notified.await;
        }
    }

    fn depth(&self, kind: JobKind) -> usize {
        let st = self.lock();
        st.ready.get(&kind).map_or(0, |q| q.len())
            + st.delayed
                .iter()
                .filter(|Reverse((_, _, j))| j.0.kind == kind)
                .count()
    }

    fn close(&self) {
        self.lock().closed = true;
        for s in self.ready_signal.values() {
            s.notify_waiters();
        }
        self.timer_signal.notify_waiters();
    }

    fn health(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Publishing is a push onto a list: nothing is ever dropped.
    fn take_dropped(&self) -> Vec<i64> {
        Vec::new()
    }

    async fn request(
        &self,
        service: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RequestError> {
        let no_server = || RequestError::NoServer(service.to_owned());
        let server = self.server(service).ok_or_else(no_server)?;
        let (request, answer) = Request::in_process(payload);
        let asked = async {
            server.send(request).await.map_err(|_| no_server())?;
            // A server that drops the request unanswered is a server that never answers.
            answer.await.map_err(|_| RequestError::TimedOut {
                service: service.to_owned(),
                timeout,
            })
        };
        tokio::time::timeout(timeout, asked)
            .await
            .unwrap_or_else(|_| {
                Err(RequestError::TimedOut {
                    service: service.to_owned(),
                    timeout,
                })
            })
    }

    async fn serve(&self, service: &str) -> Result<mpsc::Receiver<Request>, BusError> {
        check_name("service", service)?;
        let (tx, rx) = mpsc::channel(SERVE_BUFFER);
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.to_owned())
            .or_default()
            .push(tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::job;
    use std::sync::Arc;

    #[tokio::test]
    async fn ready_jobs_come_out_in_order_per_kind() {
        let q = InProcessQueue::new();
        q.publish(vec![
            job(1, JobKind::Route, 0),
            job(2, JobKind::Webhook, 0),
            job(3, JobKind::Route, 0),
        ]);
        assert_eq!(q.next(JobKind::Route).await.unwrap().id, 1);
        assert_eq!(q.next(JobKind::Route).await.unwrap().id, 3);
        assert_eq!(q.next(JobKind::Webhook).await.unwrap().id, 2);
        assert_eq!(q.depth(JobKind::Route), 0);
    }

    #[tokio::test]
    async fn delayed_jobs_wait_for_their_time() {
        let q = Arc::new(InProcessQueue::new());
        tokio::spawn(q.clone().run_timer());
        let due = now_ms() + 50;
        q.publish(vec![job(1, JobKind::Route, due)]);
        assert_eq!(q.depth(JobKind::Route), 1);
        let got = q.next(JobKind::Route).await.unwrap();
        assert_eq!(got.id, 1);
        assert!(now_ms() >= due);
    }

    #[tokio::test]
    async fn conformance() {
        crate::conformance::run_all(|| async {
            let q = Arc::new(InProcessQueue::new());
            tokio::spawn(q.clone().run_timer());
            q as Arc<dyn Queue>
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_multi_thread() {
        crate::conformance::run_all(|| async {
            let q = Arc::new(InProcessQueue::new());
            tokio::spawn(q.clone().run_timer());
            q as Arc<dyn Queue>
        })
        .await;
    }

    #[tokio::test]
    async fn close_wakes_waiting_workers() {
        let q = Arc::new(InProcessQueue::new());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next(JobKind::Webhook).await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert!(waiter.await.unwrap().is_none());
    }
}

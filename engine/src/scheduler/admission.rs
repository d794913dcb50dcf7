//! Admission of executions to the worker pool, fair between tenants.
//!
//! Every execution asks for a ticket before it is handed to the pool. A
//! ticket is granted when a worker is free and the tenant is under its
//! quotas (steps at once, memory across its running steps). When several
//! tenants wait, the next free worker goes to the tenant with the fewest
//! executions running (ties: the one served longest ago), so one tenant's
//! thousand queued steps do not starve another's single step. Within a
//! tenant, executions are admitted in the order they asked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::tenant::Tenant;

/// The engine-wide gate.
pub(crate) struct Admission {
    state: Mutex<State>,
}

struct State {
    /// Workers free.
    free: usize,
    /// Per tenant: its quota, what runs and what waits.
    tenants: HashMap<Arc<str>, Load>,
    /// Increases with every grant; orders tenants by when they were last served.
    grants: u64,
}

struct Load {
    tenant: Tenant,
    running: usize,
    memory: u64,
    last_served: u64,
    waiting: VecDeque<Waiter>,
}

impl Load {
    /// Whether one more execution needing `memory` is within the quotas:
    /// under the step count, and under the memory quota unless nothing of
    /// the tenant runs (a step whose own limit is within the quota, as
    /// planning checks, always runs eventually).
    fn fits(&self, memory: u64) -> bool {
        let quota = &self.tenant.quota;
        self.running < quota.concurrent_steps
            && (self.running == 0 || self.memory.saturating_add(memory) <= quota.memory)
    }
}

/// A queued request: the memory it needs, and where its ticket goes.
struct Waiter {
    memory: u64,
    deliver: Box<dyn FnOnce(Ticket) + Send>,
}

/// The right to occupy one worker; dropping it frees the worker.
pub(crate) struct Ticket {
    gate: Arc<Admission>,
    tenant: Arc<str>,
    memory: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.free += 1;
        if let Some(load) = state.tenants.get_mut(&self.tenant) {
            load.running -= 1;
            load.memory -= self.memory;
        }
        drop(state);
        self.gate.grant_waiting();
    }
}

impl Admission {
    /// A gate for `workers` workers.
    pub(crate) fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { free: workers, tenants: HashMap::new(), grants: 0 }) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks for a ticket for an execution of `tenant` needing `memory` bytes
    /// of its memory quota. Returns it at once when it can be granted now and
    /// nobody waits; otherwise queues the request, and `deliver` is called
    /// with the ticket later (on whichever thread frees a worker). A ticket
    /// that `deliver` drops frees its worker again.
    pub(crate) fn request(
        self: &Arc<Self>,
        tenant: &Tenant,
        memory: u64,
        deliver: impl FnOnce(Ticket) + Send + 'static,
    ) -> Option<Ticket> {
        let mut state = self.lock();
        let nobody_waits = state.tenants.values().all(|load| load.waiting.is_empty());
        let free = state.free > 0;
        let load = state.tenants.entry(tenant.name.clone()).or_insert_with(|| Load {
            tenant: tenant.clone(),
            running: 0,
            memory: 0,
            last_served: 0,
            waiting: VecDeque::new(),
        });
        if nobody_waits && free && load.fits(memory) {
            return Some(self.take(&mut state, &tenant.name, memory));
        }
        load.waiting.push_back(Waiter { memory, deliver: Box::new(deliver) });
        drop(state);
        self.grant_waiting();
        None
    }

    /// Records a grant to `tenant` in `state` and makes its ticket.
    fn take(self: &Arc<Self>, state: &mut State, tenant: &Arc<str>, memory: u64) -> Ticket {
        state.free -= 1;
        state.grants += 1;
        let grants = state.grants;
        if let Some(load) = state.tenants.get_mut(tenant) {
            load.running += 1;
            load.memory += memory;
            load.last_served = grants;
        }
        Ticket { gate: self.clone(), tenant: tenant.clone(), memory }
    }

    /// Grants free workers to waiting requests, fairly, until no worker is
    /// free or no waiting request fits its tenant's quotas.
    fn grant_waiting(self: &Arc<Self>) {
        loop {
            let mut state = self.lock();
            if state.free == 0 {
                return;
            }
            let next = state
                .tenants
                .iter()
                .filter(|(_, load)| load.waiting.front().is_some_and(|head| load.fits(head.memory)))
                .map(|(name, load)| (load.running, load.last_served, name.clone()))
                .min();
            let Some((_, _, name)) = next else { return };
            let Some(waiter) = state.tenants.get_mut(&name).and_then(|load| load.waiting.pop_front()) else {
                return;
            };
            let ticket = self.take(&mut state, &name, waiter.memory);
            drop(state);
            (waiter.deliver)(ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::TenantQuota;

    fn tenant(name: &str, quota: TenantQuota) -> Tenant {
        Tenant { name: name.into(), quota: Arc::new(quota) }
    }

    /// Requests `id`; a ticket granted later is sent on `to` with its id.
    fn request(
        gate: &Arc<Admission>,
        tenant: &Tenant,
        id: u32,
        memory: u64,
        to: &mpsc::Sender<(u32, Ticket)>,
    ) -> Option<Ticket> {
        let to = to.clone();
        gate.request(tenant, memory, move |ticket| drop(to.send((id, ticket))))
    }

    #[test]
    fn a_waiting_tenant_with_nothing_running_goes_first() {
        let gate = Admission::new(1);
        let (busy, quiet) = (tenant("busy", TenantQuota::default()), tenant("quiet", TenantQuota::default()));
        let (to, granted) = mpsc::channel();
        let first = request(&gate, &busy, 0, 0, &to).expect("a free worker");
        for id in 1..=100 {
            assert!(request(&gate, &busy, id, 0, &to).is_none());
        }
        assert!(request(&gate, &quiet, 1000, 0, &to).is_none());
        drop(first);
        let (id, ticket) = granted.try_recv().unwrap();
        assert_eq!(id, 1000, "the quiet tenant's only step is admitted before the busy tenant's queue");
        drop(ticket);
        assert_eq!(granted.try_recv().unwrap().0, 1, "then the busy tenant's queue, in order");
    }

    #[test]
    fn quotas_hold_back_a_tenant_but_not_others() {
        let gate = Admission::new(4);
        let capped = tenant("capped", TenantQuota { concurrent_steps: 1, ..TenantQuota::default() });
        let other = tenant("other", TenantQuota::default());
        let (to, granted) = mpsc::channel();
        let held = request(&gate, &capped, 0, 0, &to).expect("first step of the tenant");
        assert!(request(&gate, &capped, 1, 0, &to).is_none(), "one step at a time");
        assert!(request(&gate, &other, 2, 0, &to).is_none(), "queued behind the waiting request");
        assert_eq!(granted.try_recv().unwrap().0, 2, "but admitted at once: its tenant is under quota");
        assert!(granted.try_recv().is_err());
        drop(held);
        assert_eq!(granted.try_recv().unwrap().0, 1);
    }

    #[test]
    fn memory_quota_counts_running_steps() {
        let gate = Admission::new(4);
        let capped = tenant("capped", TenantQuota { memory: 100, ..TenantQuota::default() });
        let (to, granted) = mpsc::channel();
        let a = request(&gate, &capped, 0, 60, &to).unwrap();
        assert!(request(&gate, &capped, 1, 60, &to).is_none(), "60 + 60 is over the quota of 100");
        assert!(granted.try_recv().is_err());
        drop(a);
        assert_eq!(granted.try_recv().unwrap().0, 1);
    }
}

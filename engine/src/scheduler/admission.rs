//! Admission of executions to the worker pool, fair between tenants: the
//! engine's one ledger of workers, GPU slots and tenants' running steps and
//! memory, shared by every run of the engine.
//!
//! Every execution asks for a ticket before it is handed to the pool. A
//! ticket is granted when a worker is free, the GPU slots it asks for are
//! free, and the tenant is under its quotas (steps at once, memory across
//! its running steps). When several tenants wait, the next free worker goes
//! to the tenant with the fewest executions running (ties: the one served
//! longest ago), so one tenant's thousand queued steps do not starve
//! another's single step. Within a tenant, executions are admitted in the
//! order they asked, except that one waiting for GPU slots does not hold
//! back those behind it that need none.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::native::Device;
use crate::tenant::Tenant;

/// The engine-wide gate.
pub(crate) struct Admission {
    state: Mutex<State>,
    /// CUDA devices behind the GPU slots (0: the slots run on the CPU).
    gpu_devices: usize,
}

/// What one execution needs besides a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Need {
    /// Bytes of its tenant's memory quota (its memory limit).
    pub memory: u64,
    /// GPU slots.
    pub gpus: usize,
}

struct State {
    /// Workers free.
    free: usize,
    /// Whether each GPU slot is free.
    gpu_free: Vec<bool>,
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
    /// A tenant with nothing running or waiting.
    fn idle(tenant: &Tenant) -> Self {
        Self { tenant: tenant.clone(), running: 0, memory: 0, last_served: 0, waiting: VecDeque::new() }
    }

    /// Whether one more execution needing `memory` is within the quotas:
    /// under the step count, and under the memory quota unless nothing of
    /// the tenant runs (a step whose own limit is within the quota, as
    /// planning checks, always runs eventually).
    fn fits(&self, memory: u64) -> bool {
        let quota = &self.tenant.quota;
        self.running < quota.concurrent_steps
            && (self.running == 0 || self.memory.saturating_add(memory) <= quota.memory)
    }

    /// The first waiter that can be granted now, with `free_gpus` free: the
    /// queue's order, skipping only those waiting for GPU slots.
    fn next_grantable(&self, free_gpus: usize) -> Option<usize> {
        for (index, waiter) in self.waiting.iter().enumerate() {
            if waiter.need.gpus > free_gpus {
                continue;
            }
            return self.fits(waiter.need.memory).then_some(index);
        }
        None
    }
}

/// A queued request: what it needs, and where its ticket goes.
struct Waiter {
    need: Need,
    deliver: Box<dyn FnOnce(Ticket) + Send>,
}

/// The right to occupy one worker (and the GPU slots asked for); dropping
/// it frees them.
pub(crate) struct Ticket {
    gate: Arc<Admission>,
    tenant: Arc<str>,
    memory: u64,
    gpu_slots: Vec<usize>,
}

impl Ticket {
    /// The device the execution runs on: the CUDA device behind its first
    /// GPU slot (slots beyond the devices share them, round robin), or the
    /// CPU when it holds no slot or no GPU was detected.
    pub(crate) fn device(&self) -> Device {
        match self.gpu_slots.first() {
            Some(&slot) if self.gate.gpu_devices > 0 => Device::Gpu { ordinal: slot % self.gate.gpu_devices },
            _ => Device::Cpu,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.free += 1;
        for &slot in &self.gpu_slots {
            state.gpu_free[slot] = true;
        }
        if let Some(load) = state.tenants.get_mut(&self.tenant) {
            load.running -= 1;
            load.memory -= self.memory;
        }
        drop(state);
        self.gate.grant_waiting();
    }
}

impl State {
    fn free_gpus(&self) -> usize {
        self.gpu_free.iter().filter(|&&free| free).count()
    }
}

impl Admission {
    /// A gate for `workers` workers and `gpu_slots` GPU slots, backed by
    /// `gpu_devices` CUDA devices.
    pub(crate) fn new(workers: usize, gpu_slots: usize, gpu_devices: usize) -> Arc<Self> {
        let state = State { free: workers, gpu_free: vec![true; gpu_slots], tenants: HashMap::new(), grants: 0 };
        Arc::new(Self { state: Mutex::new(state), gpu_devices })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks for a ticket for an execution of `tenant` that needs `need`
    /// (at most as many GPU slots as there are: planning checks). Returns it
    /// at once when it can be granted now and nobody waits; otherwise queues
    /// the request, and `deliver` is called with the ticket later (on
    /// whichever thread frees a worker). A ticket that `deliver` drops frees
    /// its worker again.
    pub(crate) fn request(
        self: &Arc<Self>,
        tenant: &Tenant,
        need: Need,
        deliver: impl FnOnce(Ticket) + Send + 'static,
    ) -> Option<Ticket> {
        let mut state = self.lock();
        let nobody_waits = state.tenants.values().all(|load| load.waiting.is_empty());
        let free = state.free > 0 && state.free_gpus() >= need.gpus;
        let load = state.tenants.entry(tenant.name.clone()).or_insert_with(|| Load::idle(tenant));
        if nobody_waits && free && load.fits(need.memory) {
            return Some(self.take(&mut state, &tenant.name, need));
        }
        load.waiting.push_back(Waiter { need, deliver: Box::new(deliver) });
        drop(state);
        self.grant_waiting();
        None
    }

    /// Holds `tenant`'s later grants to its (changed) quota, also for runs
    /// that began under the old one; a raised quota may admit waiters now.
    pub(crate) fn set_quota(self: &Arc<Self>, tenant: &Tenant) {
        let mut state = self.lock();
        match state.tenants.get_mut(&tenant.name) {
            Some(load) => load.tenant = tenant.clone(),
            None => {
                state.tenants.insert(tenant.name.clone(), Load::idle(tenant));
            }
        }
        drop(state);
        self.grant_waiting();
    }

    /// Records a grant to `tenant` in `state` and makes its ticket.
    fn take(self: &Arc<Self>, state: &mut State, tenant: &Arc<str>, need: Need) -> Ticket {
        state.free -= 1;
        state.grants += 1;
        let grants = state.grants;
        let gpu_slots: Vec<usize> =
            (0..state.gpu_free.len()).filter(|&slot| state.gpu_free[slot]).take(need.gpus).collect();
        for &slot in &gpu_slots {
            state.gpu_free[slot] = false;
        }
        if let Some(load) = state.tenants.get_mut(tenant) {
            load.running += 1;
            load.memory += need.memory;
            load.last_served = grants;
        }
        Ticket { gate: self.clone(), tenant: tenant.clone(), memory: need.memory, gpu_slots }
    }

    /// Grants free workers to waiting requests, fairly, until no worker is
    /// free or no waiting request fits its tenant's quotas.
    fn grant_waiting(self: &Arc<Self>) {
        loop {
            let mut state = self.lock();
            if state.free == 0 {
                return;
            }
            let free_gpus = state.free_gpus();
            let next = state
                .tenants
                .iter()
                .filter_map(|(name, load)| {
                    let index = load.next_grantable(free_gpus)?;
                    Some((load.running, load.last_served, name.clone(), index))
                })
                .min();
            let Some((_, _, name, index)) = next else { return };
            let Some(waiter) = state.tenants.get_mut(&name).and_then(|load| load.waiting.remove(index)) else {
                return;
            };
            let ticket = self.take(&mut state, &name, waiter.need);
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
        request_gpus(gate, tenant, id, Need { memory, gpus: 0 }, to)
    }

    fn request_gpus(
        gate: &Arc<Admission>,
        tenant: &Tenant,
        id: u32,
        need: Need,
        to: &mpsc::Sender<(u32, Ticket)>,
    ) -> Option<Ticket> {
        let to = to.clone();
        gate.request(tenant, need, move |ticket| drop(to.send((id, ticket))))
    }

    const ONE_GPU: Need = Need { memory: 0, gpus: 1 };

    #[test]
    fn gpu_slots_are_held_until_the_ticket_is_dropped() {
        let gate = Admission::new(4, 1, 1);
        let anyone = tenant("t", TenantQuota::default());
        let (to, granted) = mpsc::channel();
        let first = request_gpus(&gate, &anyone, 0, ONE_GPU, &to).expect("the slot is free");
        assert_eq!(first.device(), Device::Gpu { ordinal: 0 });
        assert!(request_gpus(&gate, &anyone, 1, ONE_GPU, &to).is_none(), "one slot, held");
        let cpu = request(&gate, &anyone, 2, 0, &to);
        assert!(cpu.is_none(), "queued behind the waiting request");
        let (id, cpu) = granted.try_recv().expect("a step that needs no GPU is not held back");
        assert_eq!((id, cpu.device()), (2, Device::Cpu));
        drop(first);
        assert_eq!(granted.try_recv().unwrap().0, 1, "the slot went to the waiting GPU step");
    }

    #[test]
    fn more_slots_than_devices_share_the_devices() {
        let gate = Admission::new(4, 3, 2);
        let anyone = tenant("t", TenantQuota::default());
        let (to, _granted) = mpsc::channel();
        let tickets: Vec<Ticket> =
            (0..3).map(|id| request_gpus(&gate, &anyone, id, ONE_GPU, &to).expect("three slots")).collect();
        let ordinals: Vec<Device> = tickets.iter().map(Ticket::device).collect();
        let gpu = |ordinal| Device::Gpu { ordinal };
        assert_eq!(ordinals, [gpu(0), gpu(1), gpu(0)], "every slot maps to a device that exists");
        let cpu_only = Admission::new(4, 2, 0);
        let slot = request_gpus(&cpu_only, &anyone, 9, ONE_GPU, &to).unwrap();
        assert_eq!(slot.device(), Device::Cpu, "slots without a GPU behind them run on the CPU");
    }

    #[test]
    fn a_waiting_tenant_with_nothing_running_goes_first() {
        let gate = Admission::new(1, 0, 0);
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
        let gate = Admission::new(4, 0, 0);
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
        let gate = Admission::new(4, 0, 0);
        let capped = tenant("capped", TenantQuota { memory: 100, ..TenantQuota::default() });
        let (to, granted) = mpsc::channel();
        let a = request(&gate, &capped, 0, 60, &to).unwrap();
        assert!(request(&gate, &capped, 1, 60, &to).is_none(), "60 + 60 is over the quota of 100");
        assert!(granted.try_recv().is_err());
        drop(a);
        assert_eq!(granted.try_recv().unwrap().0, 1);
    }

    #[test]
    fn a_changed_quota_holds_for_requests_made_under_the_old_one() {
        let gate = Admission::new(4, 0, 0);
        let old = tenant("t", TenantQuota { concurrent_steps: 1, ..TenantQuota::default() });
        let (to, granted) = mpsc::channel();
        let first = request(&gate, &old, 0, 0, &to).unwrap();
        assert!(request(&gate, &old, 1, 0, &to).is_none(), "one at a time under the old quota");
        gate.set_quota(&tenant("t", TenantQuota { concurrent_steps: 2, ..TenantQuota::default() }));
        let (id, second) = granted.try_recv().expect("a raised quota admits the waiter at once");
        assert_eq!(id, 1);
        gate.set_quota(&tenant("t", TenantQuota { concurrent_steps: 1, ..TenantQuota::default() }));
        drop(first);
        assert!(request(&gate, &old, 2, 0, &to).is_none(), "the lowered quota holds a request of an old run");
        drop(second);
        assert_eq!(granted.try_recv().unwrap().0, 2);
    }
}

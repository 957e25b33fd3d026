//! Writes the kernel filter's maps (a [`KernelPlan`]) into the loaded programs and reads what
//! they skipped.
use aya::maps::{lpm_trie::Key, Array, LpmTrie, MapData, PerCpuArray};
use flow_common::{FilterSkip, KernelFilterMasks};

use super::KernelPlan;
use crate::{
    capture::{Capture, CaptureError},
    filter::FilterConfig,
};

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> CaptureError {
    move |source| CaptureError::Map { name, source }
}

/// What the kernel filter skipped since the programs loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FilterSkipped {
    pub(crate) tcp_flows: u64,
    pub(crate) udp_packets: u64,
}

impl FilterSkipped {
    pub(crate) fn log(self, level: log::Level) {
        log::log!(
            level,
            "kernel filter skipped {} TCP flows and {} UDP packets",
            self.tcp_flows,
            self.udp_packets
        );
    }
}

impl Capture {
    /// Pushes the global filter's exclude rules on remote address, port and transport into
    /// the kernel programs (filter::kernel); `current` is what the maps hold. The rules stay
    /// in force in userspace too, so a failure here costs work, not correctness.
    pub(crate) fn apply_filter(&mut self, current: &mut KernelPlan, filter: &FilterConfig) {
        let plan = KernelPlan::compile(filter);
        if plan == *current {
            return;
        }
        match self.set_kernel_filter(current, &plan) {
            Ok(()) => {
                log::info!(
                    "kernel filter: {} of {} global exclude rules decided in the kernel",
                    plan.kernel_rules,
                    plan.kernel_rules + plan.userspace_rules
                );
                *current = plan;
            }
            Err(e) => {
                log::error!("kernel filter not updated, its rules apply in userspace only: {e}");
                // The maps may hold entries of both plans: remember them all for the next
                // update.
                let mut stale = plan;
                stale.v4.append(&mut current.v4);
                stale.v6.append(&mut current.v6);
                stale.ports.append(&mut current.ports);
                stale.masks = Default::default();
                *current = stale;
            }
        }
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, CaptureError> {
        self.ebpf.map_mut(name).ok_or(CaptureError::Map {
            name,
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })
    }

    /// Replaces the kernel filter's rules `old` (what the maps hold) by `new`. The filter is
    /// off while the maps change: meanwhile flows are decided in userspace only.
    pub(crate) fn set_kernel_filter(
        &mut self,
        old: &KernelPlan,
        new: &KernelPlan,
    ) -> Result<(), CaptureError> {
        let mut masks: Array<&mut MapData, KernelFilterMasks> =
            Array::try_from(self.map_mut("FILTER_MASKS")?).map_err(map_err("FILTER_MASKS"))?;
        masks
            .set(0, KernelFilterMasks::default(), 0)
            .map_err(map_err("FILTER_MASKS"))?;

        let mut v4: LpmTrie<&mut MapData, [u8; 4], u64> =
            LpmTrie::try_from(self.map_mut("FILTER_V4")?).map_err(map_err("FILTER_V4"))?;
        for (prefix, addr, _) in &old.v4 {
            let _ = v4.remove(&Key::new(*prefix, *addr));
        }
        for (prefix, addr, rules) in &new.v4 {
            v4.insert(&Key::new(*prefix, *addr), rules, 0)
                .map_err(map_err("FILTER_V4"))?;
        }
        let mut v6: LpmTrie<&mut MapData, [u8; 16], u64> =
            LpmTrie::try_from(self.map_mut("FILTER_V6")?).map_err(map_err("FILTER_V6"))?;
        for (prefix, addr, _) in &old.v6 {
            let _ = v6.remove(&Key::new(*prefix, *addr));
        }
        for (prefix, addr, rules) in &new.v6 {
            v6.insert(&Key::new(*prefix, *addr), rules, 0)
                .map_err(map_err("FILTER_V6"))?;
        }
        let mut ports: Array<&mut MapData, u64> =
            Array::try_from(self.map_mut("FILTER_PORTS")?).map_err(map_err("FILTER_PORTS"))?;
        for port in old.ports.keys().filter(|p| !new.ports.contains_key(p)) {
            ports
                .set(u32::from(*port), 0, 0)
                .map_err(map_err("FILTER_PORTS"))?;
        }
        for (port, rules) in &new.ports {
            ports
                .set(u32::from(*port), rules, 0)
                .map_err(map_err("FILTER_PORTS"))?;
        }

        let mut masks: Array<&mut MapData, KernelFilterMasks> =
            Array::try_from(self.map_mut("FILTER_MASKS")?).map_err(map_err("FILTER_MASKS"))?;
        masks.set(0, new.masks, 0).map_err(map_err("FILTER_MASKS"))
    }

    /// Counters of the kernel filter, summed over CPUs.
    pub(crate) fn filter_skipped(&self) -> FilterSkipped {
        let Some(map) = self.ebpf.map("FILTER_SKIPPED") else {
            return FilterSkipped::default();
        };
        let Ok(counters) = PerCpuArray::<&MapData, u64>::try_from(map) else {
            return FilterSkipped::default();
        };
        let sum = |kind: FilterSkip| {
            counters
                .get(&(kind as u32), 0)
                .map_or(0, |v| v.iter().sum::<u64>())
        };
        FilterSkipped {
            tcp_flows: sum(FilterSkip::TcpFlows),
            udp_packets: sum(FilterSkip::UdpPackets),
        }
    }
}

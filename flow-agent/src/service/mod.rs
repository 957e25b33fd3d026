//! Running as a system service: readiness, status, watchdog, reload and stop notifications to
//! systemd (`notify`), and least privilege once the kernel programs are attached
//! (`privileges`: the capability drop in every thread, an optional dedicated user;
//! `seccomp`: the system call filter that then refuses loading programs, mounting and the
//! like).
//!
//! The runtime calls [`Service::start`] first, [`Service::attached`] once the programs are
//! attached, [`Service::tick`] every second, [`Service::reloading`] / [`Service::reloaded`]
//! around a SIGHUP reload and [`Service::stopping`] on SIGTERM.
pub(crate) mod caps;
pub(crate) mod notify;
pub(crate) mod privileges;
pub(crate) mod seccomp;
pub(crate) mod threads;

use std::time::Instant;

use sd_notify::NotifyState;

pub(crate) use notify::{Notifier, Watchdog};
pub(crate) use privileges::{PrivilegeError, User, USER_ENV};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
}

/// The service side of the agent; inert when no manager asked for notifications.
pub(crate) struct Service {
    notifier: Option<Notifier>,
    watchdog: Option<Watchdog>,
    status: String,
}

impl Service {
    /// Reads the manager's environment and, when `user` is set, becomes that user (keeping
    /// the start-up capabilities); either way joins `groups`, those the file outputs give
    /// their files ([`privileges::join_groups`]). Call before outputs open files.
    pub(crate) fn start(user: Option<&str>, groups: &[u32]) -> Result<Service, ServiceError> {
        // Capture matters more than notifications: a manager that insists on them will say
        // so when the start-up times out.
        let notifier = Notifier::from_env();
        let watchdog = Watchdog::from_env();
        if let Some(w) = &watchdog {
            log::info!("watchdog: pinging every {:?}", w.interval);
        }
        match user.filter(|u| !u.is_empty()) {
            Some(name) => privileges::become_user(&User::lookup(name)?, groups)?,
            None => privileges::join_groups(groups),
        }
        Ok(Service {
            notifier,
            watchdog,
            status: String::new(),
        })
    }

    /// Programs attached: drop capabilities, install the system call filter in every thread,
    /// then tell the manager the agent is ready.
    pub(crate) fn attached(&mut self) -> Result<(), ServiceError> {
        let report = privileges::drop_after_attach()?;
        // After the drop, which set no_new_privs in every thread (what seccomp needs without
        // CAP_SYS_ADMIN).
        seccomp::install_after_attach();
        self.status = format!("capturing flows; capabilities kept: {}", report.kept);
        self.ready();
        Ok(())
    }

    /// Once a second from the main loop: the watchdog ping when due. The loop being stuck
    /// stops the pings, and the manager restarts the agent.
    pub(crate) fn tick(&mut self) {
        if self
            .watchdog
            .as_mut()
            .is_some_and(|w| w.due(Instant::now()))
        {
            self.notify(&[NotifyState::Watchdog]);
        }
    }

    /// SIGHUP received; what `Type=notify-reload` expects before the reload starts.
    pub(crate) fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        // Type=notify-reload wants the time; without it the message is still a reload.
        states.extend(NotifyState::monotonic_usec_now().ok());
        states.push(NotifyState::Status("reloading the configuration"));
        self.notify(&states);
    }

    /// The reload is over (applied or rejected: the agent runs either way).
    pub(crate) fn reloaded(&mut self) {
        self.ready();
    }

    /// SIGTERM received: the agent ends its flows and closes its outputs.
    pub(crate) fn stopping(&mut self) {
        self.notify(&[
            NotifyState::Stopping,
            NotifyState::Status("ending open flows and closing the outputs"),
        ]);
    }

    fn ready(&mut self) {
        if let Some(n) = self.notifier.as_mut() {
            let _ = n.send(&[NotifyState::Ready, NotifyState::Status(&self.status)]);
        }
    }

    fn notify(&mut self, states: &[NotifyState]) {
        if let Some(n) = self.notifier.as_mut() {
            let _ = n.send(states);
        }
    }
}

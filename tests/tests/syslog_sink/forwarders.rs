//! Real syslog servers for the tests: private rsyslogd and syslog-ng instances, each with its
//! own work directory, listening only on loopback ports and unix sockets in that directory,
//! writing the MSG part of every message they receive, one per line, to a file per input.
//! Unix sockets are read the way the system socket /dev/log is (rsyslog's imuxsock with its
//! special parser, syslog-ng's default parser): they get the local syslog form.
use anyhow::{bail, Context, Result};
use flow_agent_tests::{describe_bound, find_tool, slowed};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// What one input listens on; each writes to `<dir>/<name>.log`.
#[derive(Clone, Debug)]
pub enum Listen {
    UnixDgram(PathBuf),
    /// A unix datagram socket like [`Listen::UnixDgram`] whose lines are the fields the
    /// forwarder parsed from each message: `TAG|PID|SEVERITY|FACILITY|MSG` ([`Fields`]).
    UnixFields(PathBuf),
    UnixStream(PathBuf),
    Udp(u16),
    /// TCP; rsyslog takes either framing on one port, syslog-ng needs to know.
    TcpOctet(u16),
    TcpNewline(u16),
    TlsOctet(u16),
    TlsNewline(u16),
}

#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub listen: Listen,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Rsyslog,
    SyslogNg,
}

/// A test CA, a server certificate it signed (for `localhost` and 127.0.0.1), and a second
/// CA that signed nothing here.
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(find_tool("openssl")?)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Pki {
    pub fn create(dir: &Path) -> Result<Pki> {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "flow-agent test CA"), ("other-ca", "unrelated CA")] {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            openssl(dir, &args)?;
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(dir, &args)?;
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        )?;
        Ok(Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        })
    }
}

/// A loopback TCP port that was free a moment ago.
/// Where `cargo xtask setup` unpacks syslog-ng (xtask/src/setup_syslog_ng.rs).
fn syslog_ng_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join(".test-cache/syslog-ng")
}

fn rsyslog_config(dir: &Path, inputs: &[Input], pki: &Pki) -> String {
    let d = dir.display();
    let mut c = format!(
        "global(workDirectory=\"{d}\" maxMessageSize=\"64k\"\n  \
         defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" \
         defaultNetstreamDriverKeyFile=\"{}\")\n\
         # Messages are written as they are read: nothing read is lost when it stops.\n\
         main_queue(queue.type=\"Direct\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         module(load=\"imudp\")\nmodule(load=\"imtcp\" MaxSessions=\"1000\")\n\
         module(load=\"imptcp\")\n\
         template(name=\"msg\" type=\"string\" string=\"%msg%\\n\")\n\
         # The local form's MSG starts with the space after \"TAG[PID]:\", which rsyslog keeps.\n\
         template(name=\"localmsg\" type=\"string\" string=\"%msg:2:$%\\n\")\n\
         template(name=\"fields\" type=\"string\" \
         string=\"%programname%|%procid%|%syslogseverity-text%|%syslogfacility-text%|%msg:2:$%\\n\")\n",
        pki.ca.display(),
        pki.cert.display(),
        pki.key.display()
    );
    for i in inputs {
        let n = &i.name;
        let template = match &i.listen {
            Listen::UnixDgram(_) | Listen::UnixStream(_) => "localmsg",
            Listen::UnixFields(_) => "fields",
            _ => "msg",
        };
        c += &format!(
            "ruleset(name=\"{n}\") {{ action(type=\"omfile\" file=\"{d}/{n}.log\" template=\"{template}\") }}\n"
        );
        let tls =
            "streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\"";
        c += &match &i.listen {
            // As rsyslog reads /dev/log: the special parser (the default), no hostname.
            Listen::UnixDgram(p) | Listen::UnixFields(p) => format!(
                "input(type=\"imuxsock\" Socket=\"{}\" RateLimit.Interval=\"0\" ruleset=\"{n}\")\n",
                p.display()
            ),
            Listen::UnixStream(p) => format!(
                "input(type=\"imptcp\" path=\"{}\" ruleset=\"{n}\")\n",
                p.display()
            ),
            Listen::Udp(port) => format!(
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" rcvbufSize=\"16m\" ruleset=\"{n}\")\n"
            ),
            Listen::TcpOctet(port) | Listen::TcpNewline(port) => format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"{n}\")\n"
            ),
            Listen::TlsOctet(port) | Listen::TlsNewline(port) => format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" {tls} ruleset=\"{n}\")\n"
            ),
        };
    }
    c
}

fn syslog_ng_config(dir: &Path, inputs: &[Input], pki: &Pki) -> String {
    let d = dir.display();
    let mut c = "@version: 3.38\n\
                 options { keep-hostname(yes); log-msg-size(65536); log-fifo-size(100000); time-reopen(1); };\n"
        .to_string();
    let tls = format!(
        "tls(key-file(\"{}\") cert-file(\"{}\") peer-verify(optional-untrusted))",
        pki.key.display(),
        pki.cert.display()
    );
    let net = "max-connections(10) log-iw-size(100000)";
    for i in inputs {
        let n = &i.name;
        // Unix sources parse the local form by default, as syslog-ng's system() source does.
        let source = match &i.listen {
            Listen::UnixDgram(p) | Listen::UnixFields(p) => {
                format!("unix-dgram(\"{}\")", p.display())
            }
            Listen::UnixStream(p) => format!("unix-stream(\"{}\" {net})", p.display()),
            Listen::Udp(port) => format!(
                "syslog(ip(\"127.0.0.1\") port({port}) transport(\"udp\") so-rcvbuf(16777216))"
            ),
            Listen::TcpOctet(port) => {
                format!("syslog(ip(\"127.0.0.1\") port({port}) transport(\"tcp\") {net})")
            }
            Listen::TcpNewline(port) => format!(
                "network(ip(\"127.0.0.1\") port({port}) transport(\"tcp\") flags(syslog-protocol) {net})"
            ),
            Listen::TlsOctet(port) => {
                format!("syslog(ip(\"127.0.0.1\") port({port}) transport(\"tls\") {tls} {net})")
            }
            Listen::TlsNewline(port) => format!(
                "network(ip(\"127.0.0.1\") port({port}) transport(\"tls\") {tls} flags(syslog-protocol) {net})"
            ),
        };
        let template = match &i.listen {
            Listen::UnixFields(_) => "${PROGRAM}|${PID}|${LEVEL}|${FACILITY}|${MSG}",
            _ => "${MSG}",
        };
        // syslog-ng drops what its memory queues hold when it stops; a reliable disk buffer
        // keeps every message it read until the file has it, as docs/sink-syslog.md advises.
        c += &format!(
            "source s_{n} {{ {source}; }};\n\
             destination d_{n} {{ file(\"{d}/{n}.log\" template(\"{template}\\n\") template-escape(no) \
             disk-buffer(reliable(yes) disk-buf-size(67108864) dir(\"{d}\"))); }};\n\
             log {{ source(s_{n}); destination(d_{n}); flags(flow-control); }};\n"
        );
    }
    c
}

/// A running (or stopped) forwarder.
pub struct Forwarder {
    pub kind: Kind,
    dir: PathBuf,
    inputs: Vec<Input>,
    child: Option<Child>,
}

impl Forwarder {
    /// Writes the configuration into `dir` and starts the forwarder.
    pub fn start(kind: Kind, dir: &Path, inputs: Vec<Input>, pki: &Pki) -> Result<Forwarder> {
        std::fs::create_dir_all(dir)?;
        let config = match kind {
            Kind::Rsyslog => rsyslog_config(dir, &inputs, pki),
            Kind::SyslogNg => syslog_ng_config(dir, &inputs, pki),
        };
        std::fs::write(dir.join("forwarder.conf"), config)?;
        let mut f = Forwarder {
            kind,
            dir: dir.to_path_buf(),
            inputs,
            child: None,
        };
        f.restart()?;
        Ok(f)
    }

    fn command(&self) -> Result<Command> {
        let conf = self.dir.join("forwarder.conf");
        Ok(match self.kind {
            Kind::Rsyslog => {
                let mut c = Command::new(find_tool("rsyslogd")?);
                c.arg("-n")
                    .arg("-f")
                    .arg(&conf)
                    .arg("-i")
                    .arg(self.dir.join("rsyslogd.pid"));
                c
            }
            Kind::SyslogNg => {
                let root = syslog_ng_root();
                let bin = root.join("usr/sbin/syslog-ng");
                if !bin.is_file() {
                    bail!(
                        "{} is missing: `cargo xtask test` (or its setup step) unpacks syslog-ng there",
                        bin.display()
                    );
                }
                let modules = std::fs::read_dir(root.join("usr/lib/syslog-ng"))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.join("libafsocket.so").is_file())
                    .context("syslog-ng modules (libafsocket.so) not found")?;
                let libs = [
                    "usr/lib/syslog-ng",
                    "usr/lib/x86_64-linux-gnu",
                    "lib/x86_64-linux-gnu",
                ]
                .map(|d| root.join(d).display().to_string())
                .join(":");
                let mut c = Command::new(bin);
                c.args(["-F", "--no-caps", "-f"])
                    .arg(&conf)
                    .arg(format!("--module-path={}", modules.display()))
                    .arg("-R")
                    .arg(self.dir.join("syslog-ng.persist"))
                    .arg("-p")
                    .arg(self.dir.join("syslog-ng.pid"))
                    .arg("-c")
                    .arg(self.dir.join("syslog-ng.ctl"))
                    .env("LD_LIBRARY_PATH", libs);
                c
            }
        })
    }

    /// Starts it (again) and waits until its stream inputs accept connections.
    pub fn restart(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("forwarder.stderr"))?;
        let child = self
            .command()?
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {:?}", self.kind))?;
        self.child = Some(child);
        let deadline = Instant::now() + slowed(Duration::from_secs(20));
        for i in &self.inputs {
            loop {
                let ready = match &i.listen {
                    Listen::UnixDgram(p) | Listen::UnixFields(p) => p.exists(),
                    Listen::UnixStream(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
                    Listen::Udp(_) => true,
                    Listen::TcpOctet(port)
                    | Listen::TcpNewline(port)
                    | Listen::TlsOctet(port)
                    | Listen::TlsNewline(port) => {
                        std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
                    }
                };
                if ready {
                    break;
                }
                if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                    bail!("{:?} exited with {status}: {}", self.kind, self.stderr());
                }
                if Instant::now() > deadline {
                    bail!(
                        "{:?} input {} not ready within {}: {}",
                        self.kind,
                        i.name,
                        describe_bound(Duration::from_secs(20)),
                        self.stderr()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// SIGTERM, as a service manager stops it; waits for the exit.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + slowed(Duration::from_secs(20));
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{:?} did not stop within 20 s of SIGTERM", self.kind);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Unix sockets stay behind; the next start makes new ones.
        for i in &self.inputs {
            if let Listen::UnixDgram(p) | Listen::UnixFields(p) | Listen::UnixStream(p) = &i.listen
            {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("forwarder.stderr")).unwrap_or_default()
    }

    /// The MSG of every message input `name` received so far, one per line.
    pub fn received(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// One line of a [`Listen::UnixFields`] input: what the forwarder parsed from a message.
#[derive(Debug, PartialEq)]
pub struct Fields {
    pub tag: String,
    pub pid: String,
    pub severity: String,
    pub facility: String,
    pub msg: String,
}

impl Fields {
    pub fn parse(line: &str) -> Option<Fields> {
        let mut f = line.splitn(5, '|').map(str::to_string);
        Some(Fields {
            tag: f.next()?,
            pid: f.next()?,
            severity: f.next()?,
            facility: f.next()?,
            msg: f.next()?,
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

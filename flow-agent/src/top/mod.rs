//! `flow-agent top`: what talks now, per process, from the agent's live socket. `rows` makes
//! the rows from events (unit-tested), `draw` draws them; this file runs the loop. A reader
//! thread subscribes again when the agent drops `top` or restarts.
use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use flow_agent::{
    config::ConfigSource,
    encode::Format,
    sink::subscribe::{client, protocol::Request},
};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind};

use crate::tail::TailError;

mod draw;
mod rows;

use rows::{BriefFlow, Column, Row, Table};

/// How often the rates are computed and the screen redrawn.
const REFRESH: Duration = Duration::from_secs(1);
/// The wait before subscribing again once the stream ended, doubled after each failed try up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub(crate) struct TopArgs {
    /// Only flows matching this rule (repeatable), as `tail --filter`.
    #[arg(long, value_name = "RULE")]
    filter: Vec<String>,
    /// No flows matching this rule (repeatable).
    #[arg(long, value_name = "RULE")]
    exclude: Vec<String>,
    /// The agent's live socket [default: [live] socket of the configuration file].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// What the screen shows besides the rows.
pub(super) struct View {
    sort: Column,
    reverse: bool,
    /// The chosen process, by pid: it stays chosen when the order changes.
    selected: Option<u32>,
    detail: bool,
    status: String,
}

impl View {
    fn selected_index(&self, rows: &[Row]) -> Option<usize> {
        rows.iter().position(|r| Some(r.pid) == self.selected)
    }

    fn move_selection(&mut self, rows: &[Row], down: bool) {
        let next = match self.selected_index(rows) {
            None => 0,
            Some(i) if down => (i + 1).min(rows.len().saturating_sub(1)),
            Some(i) => i.saturating_sub(1),
        };
        self.selected = rows.get(next).map(|r| r.pid);
    }

    fn sort_by(&mut self, column: Column) {
        self.reverse = self.sort == column && !self.reverse;
        self.sort = column;
    }
}

/// From the reader thread.
enum Message {
    Event(Box<BriefFlow>),
    /// The stream ended (why); the reader subscribes again after `retry`.
    Ended {
        why: String,
        retry: Duration,
    },
    /// Subscribed again: what was shown came from the old stream.
    Reconnected,
}

pub(crate) fn run(args: &TopArgs, config: &ConfigSource) -> Result<(), TailError> {
    let mut request = crate::tail::request(Format::Native, &args.filter, &args.exclude)?;
    // Only the fields the screen shows: a short record for the agent to write and for us to
    // read, which keeps a live view's cost off the host's workload.
    request.brief = true;
    let socket = crate::tail::socket(args.socket.as_deref(), config)?;
    let sub = client::subscribe(&socket, &request).map_err(TailError::Agent)?;
    let (tx, rx) = mpsc::channel();
    let reader_socket = socket.clone();
    std::thread::spawn(move || read(sub, &reader_socket, &request, &tx));
    let mut terminal = ratatui::init();
    let result = ui(&mut terminal, &rx, &socket);
    ratatui::restore();
    result.map_err(|e| {
        TailError::Agent(client::SubscribeError::Io {
            path: "the terminal".into(),
            source: e,
        })
    })
}

/// Sends what the subscription brings; subscribes again, with a growing wait, whenever it ends.
/// Returns when the screen is gone.
fn read(
    mut sub: client::Subscription,
    socket: &Path,
    request: &Request,
    tx: &mpsc::Sender<Message>,
) {
    let mut line = String::new();
    loop {
        let mut why = loop {
            match sub.next_record(&mut line) {
                Ok(true) => {
                    let Ok(v) = serde_json::from_str::<BriefFlow>(&line) else {
                        continue;
                    };
                    if tx.send(Message::Event(Box::new(v))).is_err() {
                        return;
                    }
                }
                Ok(false) => break "the agent stopped".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let mut retry = RETRY_FIRST;
        sub = loop {
            if tx.send(Message::Ended { why, retry }).is_err() {
                return;
            }
            std::thread::sleep(retry);
            match client::subscribe(socket, request) {
                Ok(sub) => break sub,
                Err(e) => why = e.to_string(),
            }
            retry = (retry * 2).min(RETRY_MAX);
        };
        if tx.send(Message::Reconnected).is_err() {
            return;
        }
    }
}

fn ui(
    terminal: &mut ratatui::DefaultTerminal,
    rx: &mpsc::Receiver<Message>,
    socket: &Path,
) -> std::io::Result<()> {
    let mut table = Table::default();
    let mut view = View {
        sort: Column::OutPerSec,
        reverse: false,
        selected: None,
        detail: false,
        status: String::new(),
    };
    let mut reconnecting: Option<String> = None;
    let mut last_tick = Instant::now();
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Message::Event(ev) => table.ingest(&ev),
                Message::Ended { why, retry } => {
                    let wait = retry.as_secs_f64();
                    reconnecting = Some(format!("reconnecting in {wait:.1} s (q quits): {why}"));
                }
                Message::Reconnected => {
                    // Flows of the old stream would never end: start afresh.
                    table = Table::default();
                    reconnecting = None;
                }
            }
        }
        if last_tick.elapsed() >= REFRESH {
            table.tick(last_tick.elapsed().as_secs_f64());
            last_tick = Instant::now();
        }
        let rows = table.rows(view.sort, view.reverse);
        if view.selected_index(&rows).is_none() {
            view.selected = rows.first().map(|r| r.pid);
        }
        view.status = match &reconnecting {
            Some(what) => format!("flow-agent top: {what}"),
            None => format!(
                "flow-agent top: {} processes, {}",
                rows.len(),
                socket.display()
            ),
        };
        let flows = match (view.detail, view.selected) {
            (true, Some(pid)) => Some(table.flows(pid)),
            _ => None,
        };
        terminal.draw(|f| draw::screen(f, &view, &rows, flows.as_deref()))?;
        let wait = REFRESH
            .saturating_sub(last_tick.elapsed())
            .min(Duration::from_millis(250));
        if !event::poll(wait)? {
            continue;
        }
        let TermEvent::Key(key) = event::read()? else {
            continue; // a resize is drawn on the next turn
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match key.code {
            KeyCode::Char('q') => return Ok(()),
            KeyCode::Esc if view.detail => view.detail = false,
            KeyCode::Esc => return Ok(()),
            KeyCode::Up | KeyCode::Char('k') => view.move_selection(&rows, false),
            KeyCode::Down | KeyCode::Char('j') => view.move_selection(&rows, true),
            KeyCode::Enter => view.detail = !view.detail,
            KeyCode::Char(c @ '1'..='9') => {
                view.sort_by(Column::ALL[c as usize - '1' as usize]);
            }
            _ => {}
        }
    }
}

//! `flow-agent top`: what talks now, per process, from the agent's live socket. `rows` makes
//! the rows from events (unit-tested), `draw` draws them; this file runs the loop.
use std::{
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use flow_agent::{
    encode::Format,
    sink::subscribe::{client, DEFAULT_SOCKET},
};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind};

use crate::tail::TailError;

mod draw;
mod rows;

use rows::{Column, Row, Table};

/// How often the rates are computed and the screen redrawn.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub(crate) struct TopArgs {
    /// Only flows matching this rule (repeatable), as `tail --filter`.
    #[arg(long, value_name = "RULE")]
    filter: Vec<String>,
    /// No flows matching this rule (repeatable).
    #[arg(long, value_name = "RULE")]
    exclude: Vec<String>,
    /// The agent's live socket ([live] socket).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
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

/// From the reader thread: an event, or the end of the stream and why.
enum Message {
    Event(serde_json::Value),
    Ended(String),
}

pub(crate) fn run(args: &TopArgs) -> Result<(), TailError> {
    let request = crate::tail::request(Format::Native, &args.filter, &args.exclude)?;
    let sub = client::subscribe(&args.socket, &request).map_err(TailError::Agent)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || read(sub, tx));
    let mut terminal = ratatui::init();
    let result = ui(&mut terminal, &rx, &args.socket);
    ratatui::restore();
    result.map_err(|e| {
        TailError::Agent(client::SubscribeError::Io {
            path: "the terminal".into(),
            source: e,
        })
    })
}

fn read(mut sub: client::Subscription, tx: mpsc::Sender<Message>) {
    let mut line = String::new();
    let end = loop {
        match sub.next_record(&mut line) {
            Ok(true) => {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(Message::Event(v)).is_err() {
                        return;
                    }
                }
            }
            Ok(false) => break "the agent stopped".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    let _ = tx.send(Message::Ended(end));
}

fn ui(
    terminal: &mut ratatui::DefaultTerminal,
    rx: &mpsc::Receiver<Message>,
    socket: &std::path::Path,
) -> std::io::Result<()> {
    let mut table = Table::default();
    let mut view = View {
        sort: Column::OutPerSec,
        reverse: false,
        selected: None,
        detail: false,
        status: String::new(),
    };
    let mut ended: Option<String> = None;
    let mut last_tick = Instant::now();
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Message::Event(ev) => table.ingest(&ev),
                Message::Ended(why) => ended = Some(why),
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
        view.status = match &ended {
            Some(why) => format!("flow-agent top: {why} (q quits)"),
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

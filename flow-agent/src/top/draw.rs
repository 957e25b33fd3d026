//! Drawing `top`'s screen from its rows: the process table, the detail pane, the key line.
use ratatui::{
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState},
    Frame,
};

use super::{
    rows::{Column, FlowRow, Row},
    View,
};

const KEYS: &str = "q quit  ↑↓ select  Enter flows  1-9 sort by the Nth column (again: reverse)";

/// The table's column widths; the busiest remote takes what is left (80 columns fit).
const WIDTHS: [Constraint; 9] = [
    Constraint::Length(9),
    Constraint::Length(7),
    Constraint::Length(6),
    Constraint::Length(6),
    Constraint::Length(5),
    Constraint::Length(7),
    Constraint::Length(6),
    Constraint::Length(6),
    Constraint::Min(16),
];

pub(super) fn screen(frame: &mut Frame, view: &View, rows: &[Row], flows: Option<&[FlowRow]>) {
    let [status, main, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(view.status.as_str()), status);
    frame.render_widget(Paragraph::new(KEYS), keys);
    let table = process_table(view, rows);
    let mut state = TableState::default().with_selected(view.selected_index(rows));
    match flows {
        None => frame.render_stateful_widget(table, main, &mut state),
        Some(flows) => {
            let [top, bottom] =
                Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(main);
            frame.render_stateful_widget(table, top, &mut state);
            frame.render_widget(flow_table(view, flows), bottom);
        }
    }
}

fn process_table<'a>(view: &View, rows: &'a [Row]) -> Table<'a> {
    let header = TableRow::new(Column::ALL.iter().map(|c| {
        let mark = match (view.sort == *c, view.reverse) {
            (true, false) => "▼",
            (true, true) => "▲",
            _ => "",
        };
        Cell::from(format!("{}{mark}", c.title()))
    }))
    .style(Style::default().add_modifier(Modifier::REVERSED));
    let body = rows.iter().map(|r| {
        TableRow::new([
            r.process.clone(),
            r.pid.to_string(),
            r.user.clone(),
            short(&r.container, 6),
            r.open.to_string(),
            format!("{:.1}", r.conns_per_sec),
            bytes(r.in_per_sec),
            bytes(r.out_per_sec),
            r.remote.clone(),
        ])
    });
    Table::new(body, WIDTHS)
        .header(header)
        .row_highlight_style(Style::default().add_modifier(Modifier::BOLD))
        .highlight_symbol(">")
}

fn flow_table<'a>(view: &View, flows: &'a [FlowRow]) -> Table<'a> {
    let title = format!(" open flows of pid {} ", view.selected.unwrap_or(0));
    let header = TableRow::new(["PROTO", "DIR", "LOCAL", "REMOTE", "IN", "OUT", "APP"])
        .style(Style::default().add_modifier(Modifier::REVERSED));
    let body = flows.iter().map(|f| {
        TableRow::new([
            f.transport.clone(),
            f.direction.chars().take(3).collect(),
            f.local_port.to_string(),
            format!("{}:{}", f.remote, f.remote_port),
            bytes(f.in_bytes as f64),
            bytes(f.out_bytes as f64),
            f.app.clone(),
        ])
    });
    Table::new(
        body,
        [
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Min(20),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
        ],
    )
    .header(header)
    .block(
        Block::default()
            .borders(Borders::TOP)
            .title(Line::from(title)),
    )
}

/// 1536 → "1.5K": the widths stay fixed.
fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

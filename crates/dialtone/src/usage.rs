//! `dialtone usage` and `dialtone invoice`: usage and cost from `GET /v1/orgs/{org}/usage`
//! and `…/invoices/{month}`, as a table for people (amounts so far, the provisional part of
//! the cost apart), CSV of the exact integers for spreadsheets, or JSON or YAML.

use dialtone_client::Client;
use dialtone_types::usage::{Invoice, UsageAmounts, UsageReport, UsageRow};

use crate::cli::{Output, UsageArgs};
use crate::output::{print_table, print_value};

/// `12.345` from thousandths, exactly.
fn thousandths(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let value = value.unsigned_abs();
    format!("{sign}{}.{:03}", value / 1000, value % 1000)
}

/// `$1.234567` from micro-dollars, exactly.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    format!("{sign}${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// GiB-seconds from MiB-seconds, to two places (for reading; CSV and JSON are exact).
fn gib_seconds(mib_seconds: i64) -> String {
    format!("{:.2}", mib_seconds as f64 / 1024.0)
}

fn both(row: &UsageRow) -> UsageAmounts {
    UsageAmounts {
        cpu_milli_seconds: row.recorded.cpu_milli_seconds + row.provisional.cpu_milli_seconds,
        memory_mib_seconds: row.recorded.memory_mib_seconds + row.provisional.memory_mib_seconds,
        cost_micros: row.recorded.cost_micros + row.provisional.cost_micros,
    }
}

pub async fn run(
    args: UsageArgs,
    org: String,
    client: &Client,
    output: Output,
) -> anyhow::Result<()> {
    let mut query = vec![("by", args.by)];
    for (key, value) in [
        ("folder", args.folder),
        ("project", args.project),
        ("cluster", args.cluster),
        ("from", args.from),
        ("to", args.to),
    ] {
        if let Some(value) = value {
            query.push((key, value));
        }
    }
    let report: UsageReport = client.get(&format!("/v1/orgs/{org}/usage"), &query).await?;
    match output {
        Output::Table | Output::Wide => {
            let line = |row: &UsageRow| {
                let so_far = both(row);
                vec![
                    row.group.clone(),
                    thousandths(so_far.cpu_milli_seconds),
                    gib_seconds(so_far.memory_mib_seconds),
                    dollars(so_far.cost_micros),
                    dollars(row.provisional.cost_micros),
                ]
            };
            let mut rows: Vec<Vec<String>> = report.rows.iter().map(line).collect();
            rows.push(line(&report.total));
            print_table(
                &[
                    "GROUP",
                    "VCPU-SECONDS",
                    "GIB-SECONDS",
                    "COST",
                    "OF WHICH PROVISIONAL",
                ],
                &rows,
            );
            println!(
                "{} from {} to {}, in periods of {} s; provisional: since the last closed period, at today's rates",
                report.scope, report.from, report.to, report.period_seconds
            );
        }
        Output::Csv => {
            println!(
                "group,cpu_milli_seconds,memory_mib_seconds,cost_micros,provisional_cpu_milli_seconds,provisional_memory_mib_seconds,provisional_cost_micros,records"
            );
            for row in report.rows.iter().chain([&report.total]) {
                let (r, p) = (row.recorded, row.provisional);
                println!(
                    "{},{},{},{},{},{},{},{}",
                    csv_field(&row.group),
                    r.cpu_milli_seconds,
                    r.memory_mib_seconds,
                    r.cost_micros,
                    p.cpu_milli_seconds,
                    p.memory_mib_seconds,
                    p.cost_micros,
                    row.records
                );
            }
        }
        _ => print_value(output, &serde_json::to_value(&report)?)?,
    }
    Ok(())
}

/// `dialtone invoice get`.
pub async fn invoice(
    month: Option<String>,
    org: String,
    client: &Client,
    output: Output,
) -> anyhow::Result<()> {
    let month = month.unwrap_or_else(|| jiff::Timestamp::now().strftime("%Y-%m").to_string());
    let invoice: Invoice = client
        .get(&format!("/v1/orgs/{org}/invoices/{month}"), &[])
        .await?;
    match output {
        Output::Table | Output::Wide => {
            let line = |name: &str, region: &str, a: UsageAmounts| {
                vec![
                    name.to_string(),
                    region.to_string(),
                    thousandths(a.cpu_milli_seconds),
                    gib_seconds(a.memory_mib_seconds),
                    dollars(a.cost_micros),
                ]
            };
            let mut rows: Vec<Vec<String>> = invoice
                .lines
                .iter()
                .map(|l| line(&l.cluster, &l.region, l.amounts))
                .collect();
            rows.push(line("TOTAL", "", invoice.total));
            print_table(
                &["CLUSTER", "REGION", "VCPU-SECONDS", "GIB-SECONDS", "COST"],
                &rows,
            );
            println!(
                "{} {} invoice, {:?}: {} records",
                invoice.org, invoice.month, invoice.status, invoice.records
            );
        }
        Output::Csv => {
            println!(
                "cluster,cluster_uid,region,cpu_milli_seconds,memory_mib_seconds,cost_micros,records"
            );
            for l in &invoice.lines {
                let a = l.amounts;
                println!(
                    "{},{},{},{},{},{},{}",
                    csv_field(&l.cluster),
                    l.cluster_uid,
                    l.region,
                    a.cpu_milli_seconds,
                    a.memory_mib_seconds,
                    a.cost_micros,
                    l.records
                );
            }
        }
        _ => print_value(output, &serde_json::to_value(&invoice)?)?,
    }
    Ok(())
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(thousandths(12_345), "12.345");
        assert_eq!(thousandths(-5), "-0.005");
        assert_eq!(dollars(1_234_567), "$1.234567");
        assert_eq!(dollars(-1), "-$0.000001");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}

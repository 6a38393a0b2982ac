//! `dialtone usage` and `dialtone invoice`: usage and cost from `GET /v1/orgs/{org}/usage`
//! and `…/invoices/{month}`, as a table for people (amounts so far, the provisional part of
//! the cost apart), CSV of the exact integers for spreadsheets, or JSON or YAML.

use dialtone_client::Client;
use dialtone_types::usage::{
    Billing, BillingMode, BillingSettings, Invoice, RegionRates, UsageAmounts, UsageReport,
    UsageRow,
};

use crate::cli::{BillingCommand, Output, UsageArgs};
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
            let wide = output == Output::Wide;
            let line = |row: &UsageRow| {
                let so_far = both(row);
                let mut line = vec![
                    row.group.clone(),
                    thousandths(so_far.cpu_milli_seconds),
                    gib_seconds(so_far.memory_mib_seconds),
                    dollars(so_far.cost_micros),
                    dollars(row.provisional.cost_micros),
                    dollars(row.idle.cost_micros),
                ];
                if wide {
                    line.push(dollars(row.capacity.cost_micros));
                    line.push(dollars(row.requests.cost_micros));
                }
                line
            };
            let mut rows: Vec<Vec<String>> = report.rows.iter().map(line).collect();
            rows.push(line(&report.total));
            let mut headers = vec![
                "GROUP",
                "VCPU-SECONDS",
                "GIB-SECONDS",
                "COST",
                "OF WHICH PROVISIONAL",
                "IDLE",
            ];
            if wide {
                headers.extend(["CAPACITY", "REQUESTS"]);
            }
            print_table(&headers, &rows);
            println!(
                "{} from {} to {}, in periods of {} s; billed by {}; provisional: since the last closed period, at today's rates; idle: capacity no pod requested",
                report.scope,
                report.from,
                report.to,
                report.period_seconds,
                report.mode.name()
            );
        }
        Output::Csv => {
            println!(
                "group,cpu_milli_seconds,memory_mib_seconds,cost_micros,provisional_cpu_milli_seconds,provisional_memory_mib_seconds,provisional_cost_micros,records,{},{},{}",
                amount_columns("capacity"),
                amount_columns("requests"),
                amount_columns("idle")
            );
            for row in report.rows.iter().chain([&report.total]) {
                let (r, p) = (row.recorded, row.provisional);
                println!(
                    "{},{},{},{},{},{},{},{},{},{},{}",
                    csv_field(&row.group),
                    r.cpu_milli_seconds,
                    r.memory_mib_seconds,
                    r.cost_micros,
                    p.cpu_milli_seconds,
                    p.memory_mib_seconds,
                    p.cost_micros,
                    row.records,
                    amount_fields(row.capacity),
                    amount_fields(row.requests),
                    amount_fields(row.idle)
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
                "{} {} invoice, {:?}, billed by {}: {} records",
                invoice.org,
                invoice.month,
                invoice.status,
                invoice.mode.name(),
                invoice.records
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

fn amount_columns(prefix: &str) -> String {
    format!("{prefix}_cpu_milli_seconds,{prefix}_memory_mib_seconds,{prefix}_cost_micros")
}

fn amount_fields(a: UsageAmounts) -> String {
    format!(
        "{},{},{}",
        a.cpu_milli_seconds, a.memory_mib_seconds, a.cost_micros
    )
}

/// Micro-dollars from `0.04` or `$0.04`, exactly; at most six decimals.
fn parse_dollars(text: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!(
            "`{text}` is not an amount of dollars: give it as 0.04 (at most six decimals)"
        )
    };
    let digits = text.trim().trim_start_matches('$');
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 6
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)
}

/// `dialtone billing get|set`.
pub async fn billing(
    command: BillingCommand,
    org: String,
    client: &Client,
    output: Output,
) -> anyhow::Result<()> {
    let path = format!("/v1/orgs/{org}/billing");
    let billing: Billing = match command {
        BillingCommand::Get { .. } => client.get(&path, &[]).await?,
        BillingCommand::Set {
            mode,
            rates,
            default_rates,
            ..
        } => {
            let current: Billing = client.get(&path, &[]).await?;
            let mut settings = BillingSettings {
                mode: current.mode,
                rates: current
                    .regions
                    .iter()
                    .filter(|r| r.overridden)
                    .map(|r| (r.region.clone(), r.rates))
                    .collect(),
            };
            if let Some(mode) = mode {
                settings.mode = match mode.as_str() {
                    "capacity" => BillingMode::Capacity,
                    "requests" => BillingMode::Requests,
                    other => {
                        anyhow::bail!("unknown billing mode `{other}`; valid: capacity, requests")
                    }
                };
            }
            for rate in rates {
                let (region, prices) = rate.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!(
                        "`{rate}` is not REGION=VCPU_HOUR,GIB_HOUR (us-east-1=0.04,0.004)"
                    )
                })?;
                let (vcpu, gib) = prices.split_once(',').ok_or_else(|| {
                    anyhow::anyhow!("`{rate}` names one price; give REGION=VCPU_HOUR,GIB_HOUR")
                })?;
                settings.rates.insert(
                    region.to_string(),
                    RegionRates {
                        vcpu_hour_micros: parse_dollars(vcpu)?,
                        gib_hour_micros: parse_dollars(gib)?,
                    },
                );
            }
            for region in default_rates {
                settings.rates.remove(&region);
            }
            client.put(&path, &settings).await?
        }
    };
    match output {
        Output::Table | Output::Wide => {
            let rows: Vec<Vec<String>> = billing
                .regions
                .iter()
                .map(|r| {
                    vec![
                        r.region.clone(),
                        dollars(r.rates.vcpu_hour_micros),
                        dollars(r.rates.gib_hour_micros),
                        if r.overridden { "org's own" } else { "default" }.to_string(),
                    ]
                })
                .collect();
            print_table(&["REGION", "VCPU-HOUR", "GIB-HOUR", "PRICES"], &rows);
            println!("{} is billed by {}", billing.org, billing.mode.name());
        }
        _ => print_value(output, &serde_json::to_value(&billing)?)?,
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
        assert_eq!(parse_dollars("0.04").unwrap(), 40_000);
        assert_eq!(parse_dollars("$1.5").unwrap(), 1_500_000);
        assert_eq!(parse_dollars("2").unwrap(), 2_000_000);
        for bad in ["", "-1", "0.0000001", "1.2.3", "abc", "."] {
            assert!(parse_dollars(bad).is_err(), "{bad}");
        }
    }
}

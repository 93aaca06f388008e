//! Element changes gathered into one nft transaction.
//!
//! Executions and rollbacks queue their element change and wait; one worker takes everything
//! queued at that moment, reads the sets it touches once (when it must), and applies the lot
//! with one `nft -f -`. While it runs, the next changes pile up for the next transaction, so a burst of 1,000
//! blocks costs a few nft calls, not 1,000. A transaction is all or nothing: if it is refused,
//! each change is applied alone so only the one at fault fails, with nft's message.

use std::collections::BTreeMap;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::nft::Nft;
use crate::{Error, Result};

/// Most changes in one transaction.
const MAX_BATCH: usize = 20_000;

#[derive(Debug, Clone)]
pub(super) enum Change {
    /// Put the element in the set, to expire after `timeout` seconds (never if `None`). An
    /// element already there keeps the later of the two expiries. `fresh`: no one held it, so
    /// it is not expected to be there.
    Add {
        set: String,
        net: IpNet,
        timeout: Option<u32>,
        fresh: bool,
    },
    /// Take the element out, if it is there.
    Delete { set: String, net: IpNet },
}

impl Change {
    fn set(&self) -> &str {
        match self {
            Self::Add { set, .. } | Self::Delete { set, .. } => set,
        }
    }
}

pub(super) struct Request {
    pub change: Change,
    pub done: oneshot::Sender<Result<()>>,
}

/// Figures of the transactions so far, for the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchStats {
    pub transactions: u64,
    pub changes: u64,
    /// Time spent in transactions, nft calls included.
    pub busy: std::time::Duration,
}

pub(super) async fn worker(
    nft: Nft,
    table: String,
    mut queue: mpsc::UnboundedReceiver<Request>,
    stats: std::sync::Arc<parking_lot::Mutex<BatchStats>>,
) {
    while let Some(first) = queue.recv().await {
        let mut requests = vec![first];
        while requests.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(r) => requests.push(r),
                Err(_) => break,
            }
        }
        let changes: Vec<Change> = requests.iter().map(|r| r.change.clone()).collect();
        let started = std::time::Instant::now();
        let results = match transact(&nft, &table, &changes).await {
            Ok(()) => vec![Ok(()); changes.len()],
            Err(e) if changes.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut results = Vec::with_capacity(changes.len());
                for change in &changes {
                    results.push(transact(&nft, &table, std::slice::from_ref(change)).await);
                }
                results
            }
        };
        {
            let mut s = stats.lock();
            s.transactions += 1;
            s.changes += changes.len() as u64;
            s.busy += started.elapsed();
        }
        for (request, result) in requests.into_iter().zip(results) {
            let _ = request.done.send(result);
        }
    }
}

/// Applies changes as one transaction, planned against the sets as they are now. A set is read
/// first only when a change on it could meet an element already there: adds of addresses no
/// one held (`fresh`) need no look.
async fn transact(nft: &Nft, table: &str, changes: &[Change]) -> Result<()> {
    let mut sets: BTreeMap<&str, bool> = BTreeMap::new();
    for change in changes {
        let fresh = matches!(change, Change::Add { fresh: true, .. });
        *sets.entry(change.set()).or_insert(false) |= !fresh;
    }
    let mut live: BTreeMap<&str, BTreeMap<IpNet, Option<u64>>> = BTreeMap::new();
    for (set, look) in sets {
        let elements = if look {
            nft.elements(table, set).await?
        } else {
            BTreeMap::new()
        };
        live.insert(set, elements);
    }
    let before = live.clone();
    // What each touched element must become: present with a timeout, or gone.
    let mut after: BTreeMap<(&str, IpNet), Option<Option<u32>>> = BTreeMap::new();
    for change in changes {
        let Some(elements) = live.get_mut(change.set()) else {
            continue;
        };
        match change {
            Change::Add {
                set, net, timeout, ..
            } => {
                let wanted = timeout.map(u64::from);
                match elements.get(net) {
                    // Already there for at least as long.
                    Some(None) => continue,
                    Some(Some(left)) if wanted.is_some_and(|w| w <= *left) => continue,
                    _ => {}
                }
                elements.insert(*net, wanted);
                after.insert((set.as_str(), *net), Some(*timeout));
            }
            Change::Delete { set, net } => {
                if elements.remove(net).is_some() {
                    after.insert((set.as_str(), *net), None);
                }
            }
        }
    }
    // One command per set and verb, deletes first: an element whose expiry grows is replaced.
    // Written in nft's own syntax, which nft reads about twice as fast as its JSON; every value
    // in it is a parsed address or a number, and every name Parapet's own.
    let mut deletes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut adds: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((set, net), state) in after {
        let existed = before.get(set).is_some_and(|e| e.contains_key(&net));
        if existed {
            deletes.entry(set).or_default().push(value(net, None));
        }
        if let Some(timeout) = state {
            adds.entry(set).or_default().push(value(net, timeout));
        }
    }
    if deletes.is_empty() && adds.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for (verb, elements) in [("delete", deletes), ("add", adds)] {
        for (set, elems) in elements {
            script += &format!(
                "{verb} element inet {table} {set} {{ {} }}\n",
                elems.join(", ")
            );
        }
    }
    nft.script(&script).await
}

/// An element as nft writes it: an address or a prefix, with its timeout if any.
fn value(net: IpNet, timeout: Option<u32>) -> String {
    let val = if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    };
    match timeout {
        Some(t) => format!("{val} timeout {t}s"),
        None => val,
    }
}

/// Queues a change and waits for the transaction that carries it.
pub(super) async fn submit(queue: &mpsc::UnboundedSender<Request>, change: Change) -> Result<()> {
    let (done, answer) = oneshot::channel();
    queue
        .send(Request { change, done })
        .map_err(|_| Error::transient("the nftables worker has stopped"))?;
    answer
        .await
        .map_err(|_| Error::transient("the nftables worker has stopped"))?
}

"""The ``bench load`` report: markdown (targets, latency, errors, CPU, the matcher's profile,
the flood), the raw JSON, and a plot of answered requests and p95 per second."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from appliance.bench.host import REFERENCE_REPEATS
from appliance.bench.load import TARGET_P95_MS
from appliance.bench.report_files import write_report_files
from appliance.bench.profile_matcher import STAGE_NOTES, STAGES

REPORT_NAME = "load"
FIGURE_SIZE, FIGURE_DPI = (9, 4.5), 110
# the p95 axis ends this far above the target or the highest second after the first, whichever is
# higher: the first second (every door's first request at once) reached ~300 ms and flattened the
# rest of the run's seconds into the bottom fifth of the plot; a second above the axis is marked
# at its top with its value
P95_AXIS_HEADROOM = 1.25


def _f(value, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:,.{digits}f}"


def _stages_caption(sampled: dict | None) -> str:
    """What the stage table measured: which batches were timed, and on how many requests."""
    if not sampled:
        return "Stages of the request batches (CPU µs per request):"
    return (f"Stages of the request batches (CPU µs per request, timed in one batch in {sampled['every']} - "
            f"{sampled['requests']:,} requests - as a thread's CPU clock costs a system call to read; "
            "the wrappers add a few µs to those):")


def _outside_flood(result: dict) -> list[str]:
    """The same figure over the two thirds without the flooder (the flood's own cost apart)."""
    quiet = result.get("outside_flood")
    if not quiet:
        return []
    return ["", f"Outside the flood third ({quiet['handled']:,} requests, {_f(quiet['cpu_s'], 2)} CPU s): "
            f"**{_f(quiet['ms_per_request'], 3)} ms per request = {_f(quiet['per_core'], 0)} requests/s per matcher "
            "core** (the whole run's figure above includes the flood third: muting its messages at the router, "
            "its replays and its budget's worth of fresh requests)."]


def _host(result: dict) -> str:
    """The host's speed around the run (``bench.host``): what to compare runs of other days by."""
    probe = result.get("host")
    if not probe:
        return ""
    before, after = probe["reference_cpu_ms"]
    steal = probe.get("steal_share")
    stolen = "" if steal is None else f"; the hypervisor kept {steal:.1%} of the CPUs' time for others during the run"
    return (f" The host's speed: a fixed reference workload took {_f(before, 1)} ms of CPU before the run and "
            f"{_f(after, 1)} ms after it (median of {REFERENCE_REPEATS}; lower is faster){stolen}.")


def _replicas(result: dict) -> list[str]:
    """Every replica's share when more than one served the run, and the audit log they all wrote."""
    further = result.get("further_replicas") or []
    lines = []
    if further:
        rows = [{"name": "matcher-1 (the bench's own, profiled below)", "handled": result["handled"],
                 "cpu_s": result["cpu_s"]["matcher"]}, *further]
        lines += ["", "## Replicas on this host", "",
                  f"{len(rows)} replicas on the broker's shared subscription, each in its own process on the same "
                  "stores and audit log (as `appliance-matcher@NAME` runs them, docs/operations.md); the doors' "
                  "figures above are the whole site's:", "",
                  "| replica | requests handled | CPU s | per request ms | requests/s per core |",
                  "|---|---:|---:|---:|---:|",
                  *[f"| {row['name']} | {row['handled']:,} | {_f(row['cpu_s'], 2)} | "
                    f"{_f(row['cpu_s'] / max(1, row['handled']) * 1000, 3)} | "
                    f"{_f(row['handled'] / row['cpu_s'] if row['cpu_s'] > 0 else None, 0)} |" for row in rows]]
    audit = result.get("audit_log")
    if audit:
        writers = f" written by {len(further) + 1} replicas" if further else ""
        verdict = "verified: one unbroken chain under its signed head" if audit["verified"] else \
            f"**NOT verified: {audit['problem']}**"
        lines += ["", f"The audit log after the run ({audit['entries']:,} entries{writers}, the bench's set-up "
                      f"included): {verdict}."]
    return lines


def _cpu_rows(result: dict) -> list[tuple[str, float, int]]:
    """(process, CPU s, requests it is divided by): the bench's replica by its own requests, the
    rest by every replica's (the further replicas have their own table, ``_replicas``)."""
    further = result.get("further_replicas") or []
    everyone = max(1, result["handled"] + sum(row["handled"] for row in further))
    return [(_matcher(result), seconds, max(1, result["handled"])) if name == "matcher" else (name, seconds, everyone)
            for name, seconds in result["cpu_s"].items()]


def _matcher(result: dict) -> str:
    """The bench's own replica as the report names it: by its name once it is one of several."""
    return "matcher-1" if result.get("further_replicas") else "matcher"


def _replica_count(result: dict) -> str:
    further = len(result.get("further_replicas") or [])
    return f"{further + 1} matcher replicas" if further else "one matcher replica"


def _switches(counts: Sequence[int] | None, handled: int) -> str:
    """A thread's (waited, pre-empted) switches per request as two table cells; n/a if not counted."""
    return " | ".join(_f(count / handled, 2) for count in counts) if counts else "n/a | n/a"


def markdown(result: dict, machine: dict, plot_name: str | None) -> str:
    latency = result["latency_ms"]
    handled = max(1, result["handled"])
    switches = result.get("matcher_threads_switches", {})  # absent from reports before this count
    lines = [
        "# Matcher load test (`appliance bench load`)", "",
        f"{machine.get('date', '')} - {machine.get('cpu', '?')}, {result['cpus']} CPUs; load average "
        f"{result['load_average'][0]:.1f} at the start, {result['load_average'][1]:.1f} at the end. "
        f"Broker (Mosquitto, mutual TLS, ACLs), {_replica_count(result)} and the door processes share these CPUs "
        "with whatever else runs on the machine: the matcher's CPU time per request depends on the neighbours "
        "far less than wall time does, but still does (a CPU second does less work while other machines share "
        "the caches)." + _host(result), "",
        f"{result['devices']} provisioned doors in {result['processes']} processes asking {result['rate_per_s']:,.0f} "
        f"match requests/s in all for {result['seconds']:g} s, gallery of {result['gallery']:,} templates; mix "
        + ", ".join(f"{kind} {share:.0%}" for kind, share in result["shares"].items())
        + " (a catch-up is one door's outbox of events sealed while it was offline, sent in one bundle as the "
        "outbox pump sends them, on top of the requests). "
        f"The simulated devices ran at nice {result.get('device_niceness', 0)}: on a site they are other machines, "
        "so the broker and the matcher get the CPU first. Each door process does all its doors' work on one "
        "thread, and each door made one pass before the measured run, not counted (its session keys set up, "
        "as at a door online before the rush).", "",
        "## Targets (issue 17, done when)", "", "| target | measured | met |", "|---|---:|---|",
    ]
    for target in result["targets"].values():
        lines.append(f"| {target['target']} | {_f(target['measured'], 2)} | {'yes' if target['met'] else 'no'} |")
    if "flood" in result["targets"] and result.get("thirds"):
        lines += ["", f"Read the flood's ratio beside this run's control: the two thirds without it were "
                      f"{_f(result['thirds']['control_ratio'], 2)}x apart (below, \"One device flooding during "
                      "the middle third\")."]
    lines += [
        "", "## Requests", "",
        f"Answered **{result['answered']:,}** ({_f(result['requests_per_s'])} requests/s over the "
        f"{_f(result.get('span_s', result['seconds']))} s from the first request sent to the last answer: doors "
        "short of CPU fall behind their schedule and make their passes after the run's nominal end); unanswered "
        f"{result['unanswered']}; answers other than the kind of pass must get {result['wrong_answers']}. "
        f"Round trip at the door p50 **{_f(latency['p50'])} ms**, p95 **{_f(latency['p95'])} ms**, "
        f"p99 {_f(latency['p99'])} ms. Events of catch-ups sent {result['events_sent']:,}, acknowledged "
        f"{result['events_acknowledged']:,}.", "",
        "| kind | answered | wrong | p50 ms | p95 ms |", "|---|---:|---:|---:|---:|",
        *[f"| {kind} | {row['answered']:,} | {row['wrong']} | {_f(row['p50_ms'])} | {_f(row['p95_ms'])} |"
          for kind, row in result["per_kind"].items()],
        "", "## CPU", "",
        "| process | CPU s | per request ms |", "|---|---:|---:|",
        *[f"| {name} | {_f(seconds, 2)} | {_f(seconds / per * 1000, 3)} |" for name, seconds, per in _cpu_rows(result)],
        "", f"The {_matcher(result)} process used **{_f(result['matcher_cpu_ms_per_request'], 3)} ms of CPU per "
        "request** "
        f"({result['handled']:,} requests handled): **{_f(result['requests_per_matcher_core'], 0)} requests/s "
        "per matcher core** by that measure.", *_outside_flood(result), *_replicas(result), "",
        "## Where the matcher's time goes (profile of this run)", "",
        "CPU per thread of the matcher process, and its thread switches per request (waited: the "
        "thread's own - a lock, the GIL, a socket; pre-empted: the CPUs were full; the request batches' "
        "are the network thread's, which runs them):", "",
        "| thread | CPU s | per request µs | switches waited | pre-empted |", "|---|---:|---:|---:|---:|",
        *[f"| {name} | {_f(seconds, 2)} | {_f(seconds / handled * 1e6, 0)} | {_switches(switches.get(name), handled)} |"
          for name, seconds in sorted(result["matcher_threads_cpu_s"].items(), key=lambda item: -item[1])],
        "", _stages_caption(result.get("stages_sampled")), "",
        "| stage | µs | what it covers |", "|---|---:|---|",
        *[f"| {stage} | {_f(result['stages_cpu_us'].get(stage), 0)} | {STAGE_NOTES[stage]} |"
          for stage in (*STAGES[:1], "decode", *STAGES[1:])],
    ]
    queue, audit = result["queue"], result["audit_writer"]
    batches = max(1, queue["batches"])
    lines += [
        "", f"Queueing (wall): a request waited {_f(queue['waited_s'] / max(1, queue['handled_total']) * 1000, 2)} ms "
        f"on average for its batch; a batch took {_f(queue['busy_s'] / batches * 1000, 2)} ms for "
        f"{_f(queue['handled_total'] / batches, 2)} requests on average (up to {queue['max_batch']} searched in one "
        f"matrix product; under load it waits up to {_f(queue.get('gather_ms', 0.0), 0)} ms for company, "
        "`[matcher] request_gather_ms`)." + _in_replica(queue, latency),
        "", f"Audit group commit: {audit.get('entries', 0):,} entries in {audit.get('batches', 0):,} transactions "
        f"(largest {audit.get('largest_batch', 0)}); the answer goes out before its entry is committed "
        "(docs/security.md, group commit).",
    ]
    flood = result.get("flood")
    if flood:
        sent = sum(flood["sent"].values())
        lines += [
            "", "## One device flooding during the middle third", "",
            f"The flooder sent {sent:,} messages ({', '.join(f'{k} {v:,}' for k, v in flood['sent'].items())}) in "
            f"{flood['ended'] - flood['began']:.1f} s; {flood['alarms']} flood alarm(s). Each time it was muted "
            f"({flood.get('shed', 0)}) the replica unsubscribed from its topics until the mute ended, so what it sent "
            "meanwhile never reached the matcher and is in none of these counts. Refused by reason: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(flood["refused"].items())) + ". "
            f"The doors' p95 was {_f(flood['p95_alone_ms'])} ms before and after it and "
            f"{_f(flood['p95_during_ms'])} ms during it: **{_f(flood['p95_ratio'], 2)}x**. The flooder's own "
            f"process used {_f(result['cpu_s']['flooder'], 1)} CPU s of the same CPUs.", *_by_third(result),
        ]
    elif result.get("thirds"):
        thirds = result["thirds"]
        lines += [
            "", "## The middle third with no flood (control)", "",
            f"No device flooded. The doors' p95 in the middle third (where a flood runs) was "
            f"{_f(thirds['p95_middle_ms'])} ms against {_f(thirds['p95_rest_ms'])} ms in the rest: "
            f"**{_f(thirds['middle_ratio'], 2)}x**, the ratio a flood run reports as the flood's effect, here "
            "the host's own change over the run.", *_by_third(result),
        ]
    if plot_name:
        lines += ["", f"![answered requests and p95 per second]({plot_name})"]
    return "\n".join(lines) + "\n"


def p95_scale(seconds: list[float], p95: list[float]) -> tuple[float, list[tuple[float, float]]]:
    """The top of the p95 axis (``P95_AXIS_HEADROOM`` over the target or every second but the
    first) and the (second, p95) points above it."""
    top = P95_AXIS_HEADROOM * max(TARGET_P95_MS, *p95[1:])
    return top, [(second, value) for second, value in zip(seconds, p95) if value > top]


def _plot(result: dict, path: Path) -> bool:
    from appliance.errors import ApplianceError
    from appliance.evaluation.plots import pyplot

    try:
        plt = pyplot()
    except ApplianceError:  # the plots extra is optional: the table and JSON still say everything
        return False
    timeline = result["timeline"]
    if not timeline:
        return False
    figure, axis = plt.subplots(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    seconds = [row[0] for row in timeline]
    axis.bar(seconds, [row[1] for row in timeline], color="#4c72b0", label="answered requests")
    axis.set_xlabel("second of the run")
    axis.set_ylabel("answered requests per second")
    other = axis.twinx()
    p95 = [row[2] for row in timeline]
    top, off_scale = p95_scale(seconds, p95)
    other.plot(seconds, [min(value, top) for value in p95], color="#c44e52", marker=".", label="p95 round trip (ms)")
    for second, value in off_scale:  # marked at the top with its value
        other.plot([second], [top], color="#c44e52", marker="^", markersize=8)
        other.annotate(f"{value:,.0f} ms", (second, top), textcoords="offset points", xytext=(6, -12),
                       color="#c44e52", fontsize=8)
    other.axhline(TARGET_P95_MS, color="#c44e52", linestyle="--", linewidth=0.8,
                  label=f"p95 target ({TARGET_P95_MS:,.0f} ms)")
    other.set_ylim(0, top)
    other.set_ylabel("p95 ms")
    flood = result.get("flood")
    if flood and timeline:
        start = flood["began"] - result["first_sent"]
        axis.axvspan(start, start + flood["ended"] - flood["began"], color="#dd8452", alpha=0.2, label="flood")
    handles = axis.get_legend_handles_labels()
    more = other.get_legend_handles_labels()
    # above the axes: inside, it hid the first seconds' bars
    axis.legend(handles[0] + more[0], handles[1] + more[1], loc="lower center", bbox_to_anchor=(0.5, 1.0),
                ncol=4, frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def write_report(result: dict, out_dir: Path) -> dict[str, Path]:
    from appliance.bench.pipeline_bench import machine_info

    machine = machine_info()
    return write_report_files(out_dir, REPORT_NAME, {"result": result, "machine": machine},
                              lambda plot_name: markdown(result, machine, plot_name), lambda path: _plot(result, path))


def _by_third(result: dict) -> list[str]:
    """The run third by third: the doors' p95, the replica's own p95 and its CPU per request (a
    flood's cost to it, or a replica growing slower as it runs), then how far apart the two outer
    thirds are - the control a middle-third ratio is read against."""
    doors, replica = result["thirds"], result.get("replica_by_third")
    middle = "the flood's" if result.get("flood") else "middle (no flood)"
    lines = ["", "The run third by third (the outer two neither flooded; the replica's own p95 from being read "
             "off the connection to the end of its batch):", "",
             "| third | doors' p95 ms | replica's own p95 ms | replica's CPU ms per request |", "|---|---:|---:|---:|"]
    for index, (name, key) in enumerate((("before", "p95_before_ms"), (middle, "p95_middle_ms"),
                                         ("after", "p95_after_ms"))):
        own, cpu = (replica["in_replica_p95_ms"][index], replica["ms_per_request"][index]) if replica else (None, None)
        lines.append(f"| {name} | {_f(doors[key])} | {_f(own, 0)} | {_f(cpu, 3)} |")
    return lines + ["", f"The two outer thirds were {_f(doors['control_ratio'], 2)}x apart, with nothing between "
                        "them but time on a shared machine: read the middle third's ratio against that."]


def _in_replica(queue: dict, latency: dict) -> str:
    """The replica's share of the round trip (from being read to the end of the request's batch)
    beside the door's; older results have no such figure."""
    inside = queue.get("in_replica_ms")
    rest = (" The broker round trip and the doors' own work are the rest of the door's round trip "
            f"(median {_f(latency['p50'])} ms).")
    if not inside:
        return rest
    return (f" From being read off the connection to the end of its batch a request spent p50 "
            f"{_f(inside['p50'])} ms, p95 {_f(inside['p95'])} ms, p99 {_f(inside['p99'])} ms in the replica "
            f"(1 ms buckets), against p50 {_f(latency['p50'])} / p95 {_f(latency['p95'])} ms at the door: the rest is "
            "the broker both ways, TLS, the replica's network thread and the door processes reading answers "
            "while they wait for CPU.")

"""``xenpy ctl``: ``xl``'s domain commands against a running ``xenpy run --control``.

``list`` and ``vcpu-list`` print ``xl list`` and ``xl vcpu-list`` tables (``vcpu-list`` adds the four runstate
times); ``--json`` prints the control socket's answer instead. ``pause``, ``unpause``, ``shutdown`` (``-r``:
reboot), ``destroy`` and ``mem-set DOMAIN MEMORY`` (the balloon target, ``xl mem-set``) act on one domain, by id
or name; ``sched-credit2 DOMAIN [-w WEIGHT] [-c CAP]`` shows or sets
its credit2 weight and cap.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from xenpy.cli.attach import add_control_argument, connect
from xenpy.cli.errors import EXIT_DATAERR, CliError
from xenpy.toolstack.control import ControlError
from xenpy.toolstack.monitor import STATE_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xenpy ctl``."""
    ctl = subparsers.add_parser(
        "ctl",
        help="list, pause, unpause, shut down or destroy the domains of a running 'xenpy run --control'",
        description="xl's domain commands against the control socket of a running 'xenpy run --control'.",
    )
    commands = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    for name, what in (("list", "the domains, as 'xl list'"),
                       ("vcpu-list", "the vCPUs, as 'xl vcpu-list', with their runstate times")):
        sub = commands.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        if name == "vcpu-list":
            sub.add_argument("domain", nargs="?", metavar="DOMAIN", help="only this domain (id or name)")
        sub.add_argument("--json", action="store_true", help="print the control socket's JSON answer")
        add_control_argument(sub)
        sub.set_defaults(handler=_run)
    for name, what in (("pause", "pause a domain's vCPUs"), ("unpause", "unpause a domain"),
                       ("sched-credit2", "show or set a domain's credit2 weight and cap, as 'xl sched-credit2'"),
                       ("shutdown", "ask a domain to shut down through its xenstore control/shutdown, as 'xl "
                        "shutdown'"),
                       ("destroy", "destroy a domain at once"),
                       ("mem-set", "set a domain's memory target (xenstore memory/target), as 'xl mem-set': its "
                        "balloon driver gives memory back or takes it again")):
        sub = commands.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        sub.add_argument("domain", metavar="DOMAIN", help="the domain's id or name")
        if name == "mem-set":
            sub.add_argument("memory", type=_memory_arg, metavar="MEMORY",
                             help="the target: MiB, or a number with a k, m or g suffix (KiB, MiB, GiB)")
        if name == "shutdown":
            sub.add_argument("-r", "--reboot", action="store_true", help="ask for a reboot instead of a poweroff")
        if name == "sched-credit2":
            sub.add_argument("-w", "--weight", type=int, metavar="WEIGHT",
                             help="set the weight (1-65535; a domain of twice the weight gets twice the CPU time "
                             "under contention; default 256)")
            sub.add_argument("-c", "--cap", type=int, metavar="CAP",
                             help="set the cap, in per cent of one pCPU (0: none, the default; at most 100 per vCPU)")
        add_control_argument(sub)
        sub.set_defaults(handler=_run)


def _memory_arg(text: str) -> int:
    """A memory size in KiB: plain MiB, or k/m/g suffixed (as xl mem-set reads it)."""
    scale = {"k": 1, "m": 1024, "g": 1024 * 1024}
    unit = text[-1:].lower()
    number = text[:-1] if unit in scale else text
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size (e.g. 128, 128m, 131072k, 1g)")
    return int(number) * scale.get(unit, 1024)


def _domain_arg(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _run(args: argparse.Namespace) -> int:
    command = args.ctl_command
    with connect(args) as client:
        request: dict[str, Any] = {}
        if getattr(args, "domain", None) is not None:
            request["domain"] = _domain_arg(args.domain)
        if command == "shutdown":
            request["reason"] = "reboot" if args.reboot else "poweroff"
        if command == "mem-set":
            request["memory_kib"] = args.memory
        if command == "sched-credit2":
            request.update({k: v for k, v in (("weight", args.weight), ("cap", args.cap)) if v is not None})
        try:
            result = client.request(command, **request)
        except ControlError as error:
            raise CliError(f"{command}: {error}", EXIT_DATAERR) from None
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    elif command == "list":
        print(_list_table(result))
    elif command == "vcpu-list":
        print(_vcpu_table(result))
    elif command == "sched-credit2":
        print(f"{'Name':<32}{'ID':>6}{'Weight':>7}{'Cap':>5}\n"
              f"{result['name']:<32}{result['domid']:>6}{result['weight']:>7}{result['cap']:>5}")
    elif command == "shutdown":
        print(f"xenpy: asked domain {result['domid']} to {result['requested']} ({result['node']})")
    elif command == "mem-set":
        print(f"xenpy: domain {result['domid']}'s memory target is {result['target_kib'] // 1024} MiB "
              f"({result['node']}); it has {result['memory_kib'] // 1024} MiB now")
    return 0


def _list_table(domains: list[dict[str, Any]]) -> str:
    lines = [f"{'Name':<40}{'ID':>5}{'Mem':>6}{'VCPUs':>6}\t{'State'}\t{'Time(s)':>8}"]
    for d in domains:
        lines.append(f"{d['name']:<40}{d['domid']:>5}{d['memory_kib'] // 1024:>6}{d['vcpus']:>6}\t"
                     f"{d['xl_state']}\t{d['cpu_time_s']:>8.1f}")
    return "\n".join(lines)


def _vcpu_table(vcpus: list[dict[str, Any]]) -> str:
    times = "".join(f"{name.capitalize() + '(s)':>13}" for name in STATE_NAMES)
    lines = [f"{'Name':<32}{'ID':>6}{'VCPU':>6}{'CPU':>6} {'State':>5}{'Time(s)':>10} Affinity (Hard / Soft)" + times]
    for v in vcpus:
        cpu = "-" if v["cpu"] is None else str(v["cpu"])
        lines.append(f"{v['name']:<32}{v['domid']:>6}{v['vcpu']:>6}{cpu:>6} {v['state']:>5}{v['time_s']:>10.1f} "
                     f"{v['affinity_hard'] + ' / ' + v['affinity_soft']:<22}"
                     + "".join(f"{v[name + '_ns'] / 1e9:>13.6f}" for name in STATE_NAMES))
    return "\n".join(lines)

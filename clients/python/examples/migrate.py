#!/usr/bin/env python3
"""Drives a whole Ferry migration task through its five steps with the Python client.

    python examples/migrate.py --addr http://127.0.0.1:7070 \\
        --source-namesrv 10.0.0.1:9876 --source-cluster ClusterA \\
        --target-namesrv 10.0.1.1:9876 --target-cluster ClusterB --topic Orders

1 CONNECT             CreateMigrationTask, ConnectSource (both clusters probed), AdvanceStep
2 IMPORT_METADATA     RefreshSourceInventory, ImportMigrationItems(all), AdvanceStep
3 SWITCH_ACCESS_POINT AdvanceStep with force: NO ROUTER RUNS IN THIS EXAMPLE, so nothing can
                      prove that clients moved their NameServer address to Ferry
4 GRAY_MIGRATION      AdvanceTopics DUAL_READ, DUAL_WRITE, SWITCHING, DONE, each forced
                      (readiness is not waited for), then AdvanceStep completes the task
5 COMPLETE            the final task is printed as JSON

Forcing skips every safety gate: this is a demonstration for test clusters, not how to move
production traffic (there, run routers, let readiness say when, and never force blindly).

Each result is printed as it comes; any failed call or refused change exits non-zero.
Every call carries the token of FERRY_TOKEN / FERRY_TOKEN_FILE when set; an https:// --addr
uses TLS (--tls-ca-file or FERRY_TLS_CA_FILE).
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from google.protobuf import json_format

from ferry_client import FerryClient, pb

STAGES = ("STAGE_DUAL_READ", "STAGE_DUAL_WRITE", "STAGE_SWITCHING", "STAGE_DONE")
OK_IMPORT = (pb.common.ITEM_RESULT_SUCCESS, pb.common.ITEM_RESULT_ALREADY_EXISTS_SKIPPED)


class Failed(Exception):
    """A step did not do what the example needs; the message says what."""


def step_name(step: int) -> str:
    return pb.migration.MigrationStep.Name(step)


def stage_name(stage: int) -> str:
    return pb.common.Stage.Name(stage)


def show(what: str, message=None) -> None:
    print(f"==> {what}", flush=True)
    if message is not None:
        print(json_format.MessageToJson(message, indent=2), flush=True)


class Migration:
    def __init__(self, client: FerryClient, args: argparse.Namespace):
        self.c = client
        self.args = args
        self.timeout = args.timeout
        self.task = None

    def advance_step(self, expect: str, force: bool = False, reason: str = "") -> None:
        """AdvanceStep from the task's current step (a stale from_step is refused)."""
        current = self.task.step
        moved = self.c.migration.AdvanceStep(
            pb.migration.AdvanceStepRequest(
                task_id=self.task.task_id,
                from_step=current,
                actor=self.args.actor,
                force=force,
                reason=reason,
            ),
            timeout=self.timeout,
        ).task
        print(
            f"==> AdvanceStep {step_name(current)} -> {step_name(moved.step)}"
            + (f" (forced: {reason})" if force else ""),
            flush=True,
        )
        if step_name(moved.step) != expect:
            raise Failed(f"expected step {expect}, task is at {step_name(moved.step)}")
        self.task = moved

    def create(self) -> None:
        target_type = {
            "4.x": pb.common.TARGET_TYPE_V4,
            "5.x": pb.common.TARGET_TYPE_V5,
        }[self.args.target_type]
        self.task = self.c.migration.CreateMigrationTask(
            pb.migration.CreateMigrationTaskRequest(
                name=self.args.name,
                source=pb.common.ClusterEndpoint(
                    namesrv_addrs=self.args.source_namesrv,
                    cluster_name=self.args.source_cluster,
                ),
                target_type=target_type,
                target=pb.common.ClusterEndpoint(
                    namesrv_addrs=self.args.target_namesrv,
                    cluster_name=self.args.target_cluster,
                ),
                actor=self.args.actor,
            ),
            timeout=self.timeout,
        ).task
        print(
            f"==> CreateMigrationTask: {self.task.task_id} ({self.task.name}), "
            f"step {step_name(self.task.step)}",
            flush=True,
        )

    def connect(self) -> None:
        connected = self.c.migration.ConnectSource(
            pb.migration.ConnectSourceRequest(task_id=self.task.task_id), timeout=self.timeout
        )
        outcome = pb.common.ConnectOutcome.Name(connected.outcome)
        print(f"==> ConnectSource: {outcome}: {connected.message}", flush=True)
        for probe in connected.probes:
            state = "ok" if probe.ok else f"{probe.error_kind}: {probe.error}"
            print(f"    {probe.role:14} {probe.address:24} {state}", flush=True)
        if connected.outcome != pb.common.CONNECT_OUTCOME_OK:
            raise Failed(f"the clusters are not reachable as asked ({outcome})")
        self.task = connected.task
        self.advance_step("MIGRATION_STEP_IMPORT_METADATA")

    def import_metadata(self) -> None:
        inventory = self.c.migration.RefreshSourceInventory(
            pb.migration.RefreshSourceInventoryRequest(task_id=self.task.task_id),
            timeout=self.timeout,
        )
        print(
            f"==> RefreshSourceInventory: snapshot {inventory.snapshot_id}, "
            f"new topics {list(inventory.new_topics)}, new groups {list(inventory.new_groups)}",
            flush=True,
        )
        items = self.c.migration.ImportMigrationItems(
            pb.migration.ImportMigrationItemsRequest(task_id=self.task.task_id, all=True),
            timeout=self.timeout,
        ).items
        print(f"==> ImportMigrationItems(all): {len(items)} items", flush=True)
        failed = []
        for item in items:
            result = pb.common.ItemResult.Name(item.result)
            kind = pb.common.ItemKind.Name(item.kind)
            notes = "; ".join([item.reason, *item.notices]).strip("; ")
            print(f"    {kind:16} {item.name:32} {result}" + (f" ({notes})" if notes else ""))
            if item.result not in OK_IMPORT:
                failed.append(f"{item.name}: {result} {item.reason}")
        if failed:
            raise Failed("import failed for " + ", ".join(failed))
        self.refresh()
        self.advance_step("MIGRATION_STEP_SWITCH_ACCESS_POINT")

    def switch_access_point(self) -> None:
        self.advance_step(
            "MIGRATION_STEP_GRAY_MIGRATION",
            force=True,
            reason="python example: no router runs here, so nothing proves that clients moved",
        )

    def task_topics(self) -> dict[str, int]:
        """Topic -> revision, every page."""
        topics, token = {}, ""
        while True:
            page = self.c.migration.ListTopicStages(
                pb.migration.ListTopicStagesRequest(task_id=self.task.task_id, page_token=token),
                timeout=self.timeout,
            )
            topics.update({t.topic: t.revision for t in page.topics})
            token = page.next_page_token
            if not token:
                return topics

    def gray_migration(self) -> None:
        in_task = self.task_topics()
        wanted = self.args.topics or sorted(in_task)
        missing = [t for t in wanted if t not in in_task]
        if missing:
            raise Failed(f"not in the task after the import: {missing}; in it: {sorted(in_task)}")
        if not wanted:
            raise Failed("the task has no topics: nothing to migrate")
        others = sorted(set(in_task) - set(wanted))
        if others:
            print(
                f"note: task topics not named with --topic stay INITIAL: {others}; the task "
                "completes only when every topic is DONE",
                flush=True,
            )
        # Each change is fenced by the revision last seen: a concurrent change is refused.
        revisions = {t: in_task[t] for t in wanted}
        for stage in STAGES:
            results = self.c.migration.AdvanceTopics(
                pb.migration.AdvanceTopicsRequest(
                    change=pb.migration.StageChangeRequest(
                        task_id=self.task.task_id,
                        topics=[
                            pb.migration.TopicRef(topic=t, expected_revision=r)
                            for t, r in revisions.items()
                        ],
                        force=True,
                        actor=self.args.actor,
                        reason="python example: forced, readiness not waited for",
                    )
                ),
                timeout=self.timeout,
            ).results
            print(f"==> AdvanceTopics -> {stage}", flush=True)
            refused = []
            for r in results:
                line = (
                    f"    {r.topic:32} {stage_name(r.from_stage)} -> {stage_name(r.to_stage)} "
                    f"changed={r.changed} revision={r.revision}"
                )
                print(line + (f" error: {r.error}" if r.error else ""), flush=True)
                if not r.changed or stage_name(r.to_stage) != stage:
                    refused.append(f"{r.topic}: {r.error or 'not changed'}")
                else:
                    revisions[r.topic] = r.revision
            if refused or len(results) != len(revisions):
                raise Failed(f"stage {stage} refused: {refused or results}")

    def complete(self) -> None:
        self.refresh()
        self.advance_step("MIGRATION_STEP_COMPLETE")
        self.refresh()
        show("final task", self.task)
        state = pb.migration.MigrationTaskState.Name(self.task.state)
        if self.task.state != pb.migration.MIGRATION_TASK_STATE_COMPLETED:
            raise Failed(f"task ended {state}, not COMPLETED")
        print(f"==> task {self.task.task_id} {state}", flush=True)

    def refresh(self) -> None:
        self.task = self.c.migration.GetMigrationTask(
            pb.migration.GetMigrationTaskRequest(task_id=self.task.task_id), timeout=self.timeout
        ).task

    def run(self) -> None:
        self.create()
        self.connect()
        self.import_metadata()
        self.switch_access_point()
        self.gray_migration()
        self.complete()


def topic_list(values: list[str]) -> list[str]:
    """--topic A --topic B,C -> [A, B, C], in order, without duplicates."""
    seen: dict[str, None] = {}
    for value in values:
        for name in value.split(","):
            if name.strip():
                seen[name.strip()] = None
    return list(seen)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Drive a whole Ferry migration (all five steps) with the Python client.",
        epilog="Every stage and step 3 are forced: for test clusters only (see the module doc).",
    )
    p.add_argument(
        "--addr",
        default=os.environ.get("FERRY_ADDR", "http://127.0.0.1:7070"),
        help="Ferry gRPC endpoint, http:// or https:// (env FERRY_ADDR)",
    )
    p.add_argument("--source-namesrv", required=True, help="source NameServers, 'h:p;h:p'")
    p.add_argument("--source-cluster", required=True, help="source cluster name")
    p.add_argument("--target-namesrv", required=True, help="target NameServers, 'h:p;h:p'")
    p.add_argument("--target-cluster", required=True, help="target cluster name")
    p.add_argument("--target-type", choices=("4.x", "5.x"), default="5.x")
    p.add_argument(
        "--topic",
        "--topics",
        dest="topic",
        action="append",
        default=[],
        help="topic to migrate (repeat or comma-separate); default: every topic of the task",
    )
    p.add_argument("--name", default="python-example", help="task name")
    p.add_argument(
        "--actor",
        default=os.environ.get("FERRY_ACTOR", "python-example"),
        help="who the audit log names (env FERRY_ACTOR)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds per call (the import waits up to 120 s on the server)",
    )
    p.add_argument("--tls-ca-file", help="CA to trust for an https:// --addr (env FERRY_TLS_CA_FILE)")
    args = p.parse_args(argv)
    args.topics = topic_list(args.topic)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with FerryClient(args.addr, tls_ca_file=args.tls_ca_file) as client:
            client.wait_ready(timeout=30)
            migration = Migration(client, args)
            try:
                migration.run()
            except (grpc.RpcError, Failed) as err:
                if isinstance(err, grpc.RpcError):
                    what = f"{err.code().name}: {err.details()}"
                else:
                    what = str(err)
                task = f" (task {migration.task.task_id})" if migration.task else ""
                print(f"error: {what}{task}", file=sys.stderr)
                return 1
    except (TimeoutError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

/// Three `orders-worker` processes share a recurring job (every second) on a real broker, with 2 s heartbeats: the
/// leader is killed (SIGKILL), then the next one frozen (SIGSTOP) past two heartbeats and woken (SIGCONT). A standby
/// leads within two heartbeats + 5 s each time, the frozen one steps down without publishing, and over the whole run
/// every tick is published exactly once.
@Suite("Scheduler failover between processes (broker)", .serialized, .tags(.broker), .needs(.broker))
struct SchedulerFailoverTests {
    struct Host {
        let name: String
        let process: LaunchedProcess

        var lines: [[String: Any]] {
            process.log.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }

        /// Lines whose message is `message`, or starts with it (`stepped down: the work failed`).
        func count(_ message: String) -> Int {
            lines.filter { ($0["message"] as? String)?.hasPrefix(message) == true }.count
        }

        /// The `scheduled_for` of each run it published.
        var published: [String] {
            lines.filter { $0["message"] as? String == "run published" }.compactMap { $0["scheduled_for"] as? String }
        }

        var pid: Int32 { process.process.processIdentifier }
    }

    @Test func aKilledAndAFrozenLeaderAreReplacedAndNoTickRunsTwiceOrIsSkipped() async throws {
        let base = try await TestBroker.url()
        let url = base + (base.contains("?") ? "&" : "?") + "heartbeat=2"
        let scope = TestBroker.uniqueName("failover")
        let work = TestBroker.uniqueName("failover-work")
        let cleanup = TestBroker.uniqueName("failover-cleanup")
        var hosts: [Host] = []
        defer {
            for host in hosts where host.process.process.isRunning {
                kill(host.pid, SIGCONT)
                kill(host.pid, SIGKILL)
            }
        }
        for name in ["a", "b", "c"] {
            let process = try LaunchedProcess(
                "orders-worker",
                [
                    "--log-format", "json", "--queue", work, "--cleanup-interval", "1", "--cleanup-queue", cleanup,
                    "--campaign-interval", "1", "--scheduler-scope", scope, "--no-events",
                ],
                environment: ["WARREN_AMQP_URL": url])
            hosts.append(Host(name: name, process: process))
        }
        func leaders() -> [Host] {
            hosts.filter { $0.count("leading") > $0.count("leadership lost") + $0.count("stepped down") }
        }
        guard try await eventually(timeout: .seconds(60), { leaders().count == 1 && leaders()[0].published.count >= 3 })
        else { throw TestFailure("no leader publishing: \(hosts.map { $0.process.log.suffix(1500) })") }

        // SIGKILL: the broker sees the socket close at once; a standby leads within its campaign interval.
        let killed = leaders()[0]
        kill(killed.pid, SIGKILL)
        let killedAt = ContinuousClock.now
        let survivors = hosts.filter { $0.pid != killed.pid }
        guard
            try await eventually(
                timeout: .seconds(30), pollEvery: .milliseconds(100),
                {
                    survivors.contains { $0.count("leading") > 0 }
                })
        else { throw TestFailure("nobody took over after SIGKILL") }
        let killFailover = ContinuousClock.now - killedAt
        #expect(killFailover < .seconds(2 * 2 + 5), "failover after SIGKILL took \(killFailover)")
        let second = try #require(survivors.first { $0.count("leading") > 0 })
        guard try await eventually(timeout: .seconds(20), { second.published.count >= 3 }) else {
            throw TestFailure("the second leader does not publish: \(second.process.log.suffix(2000))")
        }

        // SIGSTOP: the process keeps its connection open but silent; the broker drops it after two missed heartbeats.
        kill(second.pid, SIGSTOP)
        let frozenAt = ContinuousClock.now
        let third = try #require(survivors.first { $0.pid != second.pid })
        guard
            try await eventually(timeout: .seconds(40), pollEvery: .milliseconds(100), { third.count("leading") > 0 })
        else { throw TestFailure("nobody took over from the frozen leader: \(third.process.log.suffix(2000))") }
        let freezeFailover = ContinuousClock.now - frozenAt
        #expect(freezeFailover < .seconds(2 * 2 + 5), "failover from a frozen leader took \(freezeFailover)")
        guard try await eventually(timeout: .seconds(20), { third.published.count >= 3 }) else {
            throw TestFailure("the third leader does not publish")
        }
        let publishedBeforeWaking = second.published.count
        kill(second.pid, SIGCONT)
        // Woken, it learns its term ended and steps down; what it would have published as leader never goes out.
        guard
            try await eventually(
                timeout: .seconds(30),
                {
                    second.count("leadership lost") + second.count("stepped down") > 0
                })
        else { throw TestFailure("the woken leader did not step down: \(second.process.log.suffix(3000))") }
        #expect(second.published.count == publishedBeforeWaking, "the woken leader published nothing")
        guard try await eventually(timeout: .seconds(20), { third.published.count >= 6 }) else {
            throw TestFailure("the third leader stopped publishing")
        }

        for host in hosts where host.pid != killed.pid { await host.process.stop() }
        // A run's handling is one log line that names its schedule: the worker's `settled`, with its outcome.
        let handled = hosts.flatMap(\.lines).filter {
            $0["scheduled_for"] != nil && $0["label"] as? String != "warren.scheduler"
        }
        #expect(
            !handled.isEmpty,
            "no worker logged a run: \(hosts.map { "\($0.name): \($0.lines.filter { $0["message"] as? String == "settled" }.count) settled lines; \($0.process.log.suffix(1500))" })"
        )
        for line in handled {
            #expect(line["message"] as? String == "settled" && line["outcome"] as? String == "ack", "\(line)")
            #expect(line["schedule"] as? String == "cleanup")
        }
        // Every tick from the first to the last, once each (the job runs once with a 60 s misfire threshold, so the
        // ticks of a failover are published late, not dropped).
        let all = hosts.flatMap(\.published)
        let times = all.compactMap { try? Date($0, strategy: .iso8601) }.sorted()
        #expect(times.count == all.count)
        #expect(Set(times).count == times.count, "a tick published twice: \(all.sorted())")
        let gaps = zip(times, times.dropFirst()).map { $1.timeIntervalSince($0) }.filter { $0 != 1 }
        #expect(gaps.isEmpty, "ticks skipped: \(gaps), \(times)")
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            for queue in [
                work, cleanup, "warren.schedule.\(scope).cleanup.last", "warren.schedule.\(scope).cleanup.paused",
                "warren.leader.scheduler.\(scope)",
            ] {
                _ = try? await channel.queueDelete(queue)
            }
        }
    }
}

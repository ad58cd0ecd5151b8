import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Three `orders-worker` processes share the ordered flow `order-events` (4 partitions); a client publishes 1,000
/// orders × 100 events to its exchange as a client in another language would (the key in `x-warren-partition-key`);
/// one event in a hundred fails its first attempt (retried in place); one worker is killed (SIGKILL) mid-stream. Every
/// event is handled, and for every order the first handling of each number comes in order.
@Suite("Ordered flow across processes (broker)", .serialized, .tags(.broker), .needs(.broker))
struct OrderedFlowProcessTests {
    /// One handling, from an `order event` log line.
    struct Handling {
        var order: String
        var seq: Int
        var attempt: Int
        var outcome: String
        var partition: String
    }

    static func handlings(in log: String) -> [Handling] {
        log.split(separator: "\n").compactMap { line in
            guard line.contains("\"order event\""),
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let order = object["order_id"] as? String, let seq = object["seq"] as? Int,
                let attempt = object["attempt"] as? Int,
                let outcome = object["outcome"] as? String, let partition = object["partition"] as? String
            else { return nil }
            return Handling(order: order, seq: seq, attempt: attempt, outcome: outcome, partition: partition)
        }
    }

    @Test func aThousandOrdersStayInOrderAcrossThreeWorkersThroughFailuresAndAKill() async throws {
        let url = try await TestBroker.url()
        let flow = TestBroker.uniqueName("order-events")
        let (orders, events) = (1_000, 100)
        var workers: [LaunchedProcess] = []
        defer {
            for worker in workers where worker.process.isRunning { kill(worker.process.processIdentifier, SIGKILL) }
        }
        for _ in 0..<3 {
            workers.append(
                try LaunchedProcess(
                    "orders-worker",
                    [
                        "--log-format", "json", "--log-level", "info", "--no-events", "--cleanup-interval", "0",
                        "--queue", TestBroker.uniqueName("emails"), "--partitions", "4", "--order-events-flow", flow,
                        "--order-event-failure-percent", "1",
                    ],
                    environment: ["WARREN_AMQP_URL": url]))
        }
        func holding() -> [Int] { workers.map { $0.log.components(separatedBy: "holding the partition").count - 1 } }
        // Three members, a share of ⌈4/3⌉ = 2 each: every partition held, none by a process holding more than two (a
        // process that started first and took more hands them over: its log says so).
        func handedOver() -> [Int] {
            workers.map { $0.log.components(separatedBy: "handed the partition over").count - 1 }
        }
        guard
            try await eventually(
                timeout: .seconds(60),
                {
                    zip(holding(), handedOver()).map { $0 - $1 }.allSatisfy { $0 <= 2 }
                        && holding().reduce(0, +) - handedOver().reduce(0, +) == 4
                })
        else {
            throw TestFailure("the partitions were not taken: \(workers.map { $0.log.suffix(1500) })")
        }

        // A client that knows nothing of Warren: the exchange, the key header, the type; confirmed in batches.
        let connection = try await AMQPConnection.connect(
            to: AMQPEndpoint(uri: url), connectionName: "foreign publisher", logger: TestBroker.logger)
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let killAfter = orders * events * 3 / 10
        var killed: LaunchedProcess?
        var published = 0
        for seq in 1...events {
            let batch = (0..<orders).map { order in
                AMQPOutboundMessage(
                    body: Array(#"{"orderId":"order-\#(order)","seq":\#(seq)}"#.utf8), exchange: flow,
                    routingKey: "", mandatory: true,
                    properties: AMQPProperties(
                        contentType: "application/json", headers: ["x-warren-partition-key": .string("order-\(order)")],
                        deliveryMode: .persistent, messageID: "order-\(order)/\(seq)", type: "order.event"))
            }
            for result in await channel.publish(contentsOf: batch) { try result.get() }
            published += batch.count
            if killed == nil, published >= killAfter {
                // The worker holding the most partitions dies without a word; its standbys take them over.
                let held = zip(holding(), handedOver()).map { $0 - $1 }
                let victim = workers[held.indices.max { held[$0] < held[$1] } ?? 0]
                kill(victim.process.processIdentifier, SIGKILL)
                killed = victim
            }
        }
        await connection.close()

        func handled() -> Set<String> {
            Set(
                workers.flatMap { Self.handlings(in: $0.log) }.filter { $0.outcome == "ok" }.map {
                    "\($0.order)/\($0.seq)"
                })
        }
        // Counting the lines is cheap; reading them is not: read them once there are enough.
        func okLines() -> Int {
            workers.map { $0.log.components(separatedBy: #""outcome":"ok""#).count - 1 }.reduce(0, +)
        }
        guard
            try await eventually(
                timeout: .seconds(300), pollEvery: .seconds(1),
                { okLines() >= orders * events && handled().count == orders * events })
        else {
            throw TestFailure(
                "handled \(handled().count) of \(orders * events): \(workers.map { $0.log.suffix(1500) })")
        }
        // Logs in order of each process's lines; a key's partition has one holder at a time, so a key's handlings in one
        // log come before those in the next holder's: merge them by the order a key's partition changed hands.
        var firstSeen: [String: [Int]] = [:]
        var done: [String: Set<Int>] = [:]
        let survivors = workers.filter { $0 !== killed }
        for worker in [killed].compactMap({ $0 }) + survivors {
            for handling in Self.handlings(in: worker.log)
            where done[handling.order, default: []].insert(handling.seq).inserted {
                firstSeen[handling.order, default: []].append(handling.seq)
            }
        }
        #expect(firstSeen.count == orders)
        func held(_ worker: LaunchedProcess) -> Int {
            worker.log.components(separatedBy: "holding the partition").count - 1
        }
        #expect(killed.map(held) ?? 0 >= 1, "the killed worker held partitions")
        // Held at the end: taken minus handed over. Before the kill the survivors held 4 minus the killed worker's share.
        let heldAtTheEnd = survivors.map {
            held($0) - ($0.log.components(separatedBy: "handed the partition over").count - 1)
        }
        #expect(heldAtTheEnd.reduce(0, +) == 4, "the survivors hold every partition, the killed worker's taken over")
        let outOfOrder = firstSeen.filter { $0.value != Array(1...events) }
        #expect(
            outOfOrder.isEmpty,
            "orders out of order: \(outOfOrder.prefix(3).map { "\($0.key): \($0.value.prefix(20))" })")
        let all = workers.flatMap { Self.handlings(in: $0.log) }
        let failed = all.filter { $0.outcome == "failed" }
        #expect(!failed.isEmpty && failed.allSatisfy { $0.attempt == 1 }, "failures injected on first attempts")
        #expect(
            all.contains { $0.attempt == 2 && $0.outcome == "ok" }, "a failed event was retried in place and passed")
        for worker in survivors { await worker.stop() }
        try await OrderedFlowBrokerTests.deleteFlow(PartitionedFlow(flow, partitions: 4))
    }
}

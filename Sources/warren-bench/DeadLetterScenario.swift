import ArgumentParser
import Foundation
import Logging
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger

// MARK: - dead-letters

struct DeadLetters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract:
            "How fast a ledger takes dead letters off their queue into SQLite, and replays them back to work, against raw librabbitmq loops.",
        discussion: """
            A dead-letter queue is filled with copies as a worker writes them (Warren's headers, a 200-byte JSON body). \
            raw-consume: a librabbitmq loop consumes and acks them (prefetch 100). intake: DeadLetterIntake takes the \
            same count into a fresh SQLite file, each committed before its ack; the clock stops when the store holds \
            them all. raw-publish-confirmed: a librabbitmq loop publishes as many to the work queue, confirmed, a window \
            of 100. replay: DeadLetterOperationRunner replays all of them from the store (batches of 100: read, \
            publish pipelined and confirmed, one commit). The last line printed is one JSON array.
            """)

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option(help: "Dead letters in all.") var count = 20_000

    struct Row: Codable {
        var mode: String
        var messages: Int
        var msgs_per_s: Double
        var ratio_vs_raw: Double
        var cpu_us_per_msg: Double
    }

    func run() async throws {
        let count = self.count
        let rows = try await withBroker(url) { endpoint -> [Row] in
            let queue = "bench.dead-letters.work"
            let deadLetterQueue = WarrenTopology(queue: queue).deadLetterQueue
            let transport = RabbitMQTransport(endpoints: [endpoint], logger: quietLogger)
            try await transport.start()
            defer { Task { await transport.close() } }
            let admin = try await AMQPConnection.connect(
                to: endpoint, connectionName: "warren-bench-admin", logger: quietLogger)
            defer { Task { await admin.close() } }
            let channel = try await admin.openChannel()
            for doomed in [queue, deadLetterQueue] { _ = try? await channel.queueDelete(doomed) }
            try await transport.prepare(queue: queue, delays: [])
            try await channel.enableConfirms()
            let letters = Self.letters(count, queue: queue)
            func fillDeadLetters() async throws {
                for start in stride(from: 0, to: letters.count, by: 1_000) {
                    let batch = letters[start..<min(start + 1_000, letters.count)].map {
                        AMQPOutboundMessage(body: $0.body, routingKey: deadLetterQueue, properties: $0.properties)
                    }
                    for result in await channel.publish(contentsOf: batch) { try result.get() }
                }
            }
            var rows: [Row] = []
            func add(_ mode: String, _ cost: Cost, baseline: String?) {
                let rate = Double(count) / cost.seconds
                let base = rows.first { $0.mode == baseline }?.msgs_per_s ?? rate
                rows.append(
                    Row(
                        mode: mode, messages: count, msgs_per_s: rate.rounded(), ratio_vs_raw: ratio(rate, base),
                        cpu_us_per_msg: cost.cpuMicroseconds(per: count)))
                print("  \(mode): \(Int(rate)) msg/s")
            }

            try await fillDeadLetters()
            let consumer = RawLoop(
                host: endpoint.host, port: endpoint.port, user: endpoint.username, password: endpoint.password,
                vhost: endpoint.virtualHost,
                queue: deadLetterQueue)
            let (_, rawConsume) = try await Cost.of {
                try await onDedicatedThread { try consumer.consume(count: count, prefetch: 100, ackEvery: 1) }
            }
            add("raw-consume", rawConsume, baseline: nil)

            try await fillDeadLetters()
            let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                "warren-bench-dead-letters-\(UUID().uuidString).sqlite"
            ).path
            defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
            let store = try await SQLiteLedgerStore(path: path, logger: quietLogger)
            try await store.migrate()
            let intake = DeadLetterIntake(
                transport: RabbitMQTransport(endpoints: [endpoint], logger: quietLogger), store: store, queues: [queue],
                discover: false,
                logger: quietLogger)
            let meter = Cost.Meter()
            let running = Task { try await intake.run() }
            while try await store.countHeldDeadLetters(matching: DeadLetterFilter(queue: queue)) < count {
                try await Task.sleep(for: .milliseconds(20))
            }
            add("intake", meter.read(), baseline: "raw-consume")
            running.cancel()
            _ = try? await running.value

            let publisher = RawLoop(
                host: endpoint.host, port: endpoint.port, user: endpoint.username, password: endpoint.password,
                vhost: endpoint.virtualHost,
                queue: queue)
            let outbound = letters.prefix(100).map {
                OutboundMessage(body: $0.body, destination: .queue(queue), properties: $0.properties)
            }
            let (_, rawPublish) = try await Cost.of {
                try await onDedicatedThread {
                    try publisher.publishConfirmed(count: count, pacing: .window(100), cycling: outbound)
                }
            }
            add("raw-publish-confirmed", rawPublish, baseline: nil)
            _ = try await channel.queuePurge(queue)

            let runner = DeadLetterOperationRunner(store: store, transport: transport, logger: quietLogger)
            let (ended, replay) = try await Cost.of {
                let operation = try await runner.start(
                    .replay, filter: DeadLetterFilter(queue: queue), actor: "warren-bench", role: "operator")
                return try await runner.execute(operation.id)
            }
            guard ended?.status == .done, ended?.settled == count else {
                throw RawLoop.Failure(
                    description:
                        "the replay ended \(ended?.status.rawValue ?? "nowhere") after \(ended?.settled ?? 0) of \(count)"
                )
            }
            add("replay", replay, baseline: "raw-publish-confirmed")
            for doomed in [queue, deadLetterQueue] { _ = try? await channel.queueDelete(doomed) }
            try await store.close()
            return rows
        }
        print("")
        printTable(
            ["mode", "messages", "msg/s", "vs raw", "cpu µs/msg"],
            rows.map {
                [
                    $0.mode, "\($0.messages)", "\(Int($0.msgs_per_s))", format($0.ratio_vs_raw),
                    String(format: "%.1f", $0.cpu_us_per_msg),
                ]
            })
        try printJSON(rows)
    }

    /// Dead letters as a worker writes them: a JSON body and Warren's headers, failure times a millisecond apart.
    static func letters(_ count: Int, queue: String) -> [StoredMessage] {
        let now = Int64(Date().timeIntervalSince1970 * 1000) - Int64(count) - 60_000
        return (0..<count).map { index in
            let body =
                #"{"userId":"user-\#(index)","email":"user-\#(index)@example.com","note":"\#(String(repeating: "x", count: 120))"}"#
            return StoredMessage(
                body: Array(body.utf8),
                properties: AMQPProperties(
                    contentType: "application/json",
                    headers: [
                        WarrenHeader.reason: .string("rejected"),
                        WarrenHeader.errorMessage: .string(
                            "Reject: 550 mailbox user-\(index)@example.com does not exist"),
                        WarrenHeader.attempts: .int64(1), WarrenHeader.originalQueue: .string(queue),
                        WarrenHeader.lastFailureAt: .int64(now + Int64(index)),
                        WarrenHeader.host: .string("worker-1"),
                    ],
                    deliveryMode: .persistent, messageID: UUID().uuidString, type: "email.welcome"))
        }
    }
}

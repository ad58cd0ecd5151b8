import ArgumentParser
import Foundation
import Logging
import Warren
import WarrenAMQP
import WarrenLedger

// MARK: - ledger

struct LedgerIngest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract:
            "How fast the ledger records job events into SQLite (or PostgreSQL): the store alone, and through RabbitMQ.",
        discussion: """
            store: batches written straight into a fresh SQLite file (SQLiteLedgerStore.record). \
            ingest: the same events published to an exchange as WarrenEventPublisher batches would be, then a Ledger \
            consumes them into a fresh file; the clock runs from the ledger's start until the store holds them all. \
            Events are a realistic mix: per job started and ack, some retry and dead-letter, a few with long errors. \
            The last line printed is one JSON object.
            """)

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option(help: "Events in all.") var events = 200_000
    @Option(help: "Events per batch (per AMQP message).") var batch = 200
    @Option(help: "store, ingest or both, comma-separated.") var mode = "store,ingest"
    @Option(
        help:
            "Where to record: a fresh SQLite file (default), or a PostgreSQL URL (postgres://user@host:port/db; added to what it holds)."
    )
    var store: String?

    struct Row: Codable {
        var mode: String
        var events: Int
        var events_per_s: Double
        var cpu_us_per_event: Double
    }

    func run() async throws {
        let modes = mode.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let generated = Self.generate(events)
        var rows: [Row] = []
        if modes.contains("store") {
            let (_, cost) = try await withStore { store in
                try await Cost.of {
                    var start = 0
                    while start < generated.count {
                        let end = min(start + batch, generated.count)
                        try await store.record(Array(generated[start..<end]))
                        start = end
                    }
                }
            }
            rows.append(
                Row(
                    mode: "store", events: events, events_per_s: (Double(events) / cost.seconds).rounded(),
                    cpu_us_per_event: cost.cpuMicroseconds(per: events)))
        }
        if modes.contains("ingest") {
            // Events of their own (new message ids): a PostgreSQL store still holds the store mode's, and would take the
            // same ones as already recorded.
            let fresh = self.store == nil ? generated : Self.generate(events)
            let row = try await withBroker(url) { endpoint in try await ingest(fresh, endpoint: endpoint) }
            rows.append(row)
        }
        print("")
        print("mode     events  events/s  cpu µs/event")
        for row in rows {
            print(
                "\(row.mode.padding(toLength: 7, withPad: " ", startingAt: 0)) \(String(row.events).leftPadded(7)) \(String(Int(row.events_per_s)).leftPadded(9)) \(String(format: "%13.1f", row.cpu_us_per_event))"
            )
        }
        let data = try JSONEncoder().encode(rows)
        print(String(decoding: data, as: UTF8.self))
    }

    private func withStore<T>(_ body: (SQLLedgerStore) async throws -> T) async throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-bench-ledger-\(UUID().uuidString).sqlite"
        ).path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try await LedgerLocation(self.store ?? "sqlite:\(path)").open(logger: quietLogger)
        let result = try await store.withRunning {
            try await store.migrate()
            return try await body(store)
        }
        try await store.close()
        return result
    }

    private func ingest(_ generated: [WarrenEvent], endpoint: AMQPEndpoint) async throws -> Row {
        let exchange = "warren.bench.events"
        let queue = "warren.bench.ledger"
        let connection = try await AMQPConnection.connect(
            to: endpoint, connectionName: "warren-bench-events", logger: quietLogger)
        defer { Task { await connection.close() } }
        let channel = try await connection.openChannel()
        try await channel.exchangeDeclare(exchange, type: .topic, durable: true)
        for doomed in [queue, "\(queue).dead-letters", "\(queue).redelivered", "\(queue).store"] {
            _ = try? await channel.queueDelete(doomed)
        }
        return try await withStore { store in
            // Declared and bound first (the ledger's own declaration), then filled, then consumed.
            let declaring = Ledger(
                transport: RabbitMQTransport(endpoints: [endpoint], logger: quietLogger), store: store, queue: queue,
                exchange: exchange, logger: quietLogger)
            try await declaring.declare()
            await declaring.transport.close()
            try await channel.enableConfirms()
            var messages: [AMQPOutboundMessage] = []
            var start = 0
            while start < generated.count {
                let end = min(start + batch, generated.count)
                messages.append(
                    AMQPOutboundMessage(
                        body: WarrenEvent.encodeBatch(generated[start..<end]), exchange: exchange,
                        routingKey: "bench.ack",
                        properties: AMQPProperties(
                            contentType: "application/json", deliveryMode: .persistent, type: "warren.events")))
                start = end
            }
            for result in await channel.publish(contentsOf: messages) { try result.get() }
            let ledger = Ledger(
                transport: RabbitMQTransport(endpoints: [endpoint], logger: quietLogger), store: store, queue: queue,
                exchange: exchange, logger: quietLogger)
            let before = try await store.eventCount()  // a PostgreSQL database may hold earlier runs' events
            let meter = Cost.Meter()
            let running = Task { try await ledger.run() }
            while try await store.eventCount() < before + generated.count {
                try await Task.sleep(for: .milliseconds(20))
            }
            let cost = meter.read()
            ledger.shutdown()
            try await running.value
            return Row(
                mode: "ingest", events: generated.count,
                events_per_s: (Double(generated.count) / cost.seconds).rounded(),
                cpu_us_per_event: cost.cpuMicroseconds(per: generated.count))
        }
    }

    /// Jobs of two to four events: most started and acked, every tenth retried first, every fiftieth dead-lettered.
    static func generate(_ count: Int) -> [WarrenEvent] {
        var events: [WarrenEvent] = []
        events.reserveCapacity(count)
        var job = 0
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        while events.count < count {
            let id = UUID().uuidString
            let at = now + Int64(job)
            func event(_ kind: WarrenEvent.Kind, _ attempt: Int, _ offset: Int64, error: String? = nil) -> WarrenEvent {
                WarrenEvent(
                    event: kind, messageID: id, type: "email.welcome", queue: "emails", attempt: attempt,
                    atMs: at + offset,
                    queueWaitMs: 3, durationMs: kind == .started ? nil : 12, error: error, host: "worker-1")
            }
            if job % 10 == 0 {
                var retry = event(.retry, 1, 5, error: "421 mail server busy, try again later")
                retry.nextAttemptAtMs = at + 1005
                events += [event(.started, 1, 0), retry, event(.started, 2, 1006), event(.ack, 2, 1010)]
            } else if job % 50 == 1 {
                var letter = event(.deadLetter, 1, 5, error: "550 mailbox does not exist")
                letter.reason = "rejected"
                letter.headers = ["x-warren-published-at": "\(at)"]
                letter.body = #"{"userId":"\#(job)","email":"someone@bounce.example"}"#
                letter.bodyEncoding = "utf8"
                letter.bodyTruncated = false
                events += [event(.started, 1, 0), letter]
            } else {
                events += [event(.started, 1, 0), event(.ack, 1, 4)]
            }
            job += 1
        }
        return Array(events.prefix(count))
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

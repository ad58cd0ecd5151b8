import ArgumentParser
import Foundation
import InMemoryTracing
import Logging
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger
import WarrenLocalBroker

@main
struct WarrenBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-bench",
        abstract: "Warren's benchmarks. Build in release: swift build -c release --product warren-bench.",
        subcommands: [
            Consume.self, Publish.self, Latency.self, Retry.self, Memory.self, LedgerIngest.self, LedgerSearch.self,
            DeadLetters.self, BacklogChild.self,
        ],
        defaultSubcommand: Consume.self
    )
}

struct Consume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill a queue with persistent messages, then consume and ack all of it; compare modes side by side.",
        discussion: """
            Modes: raw (plain librabbitmq loop, one ack per message), raw-multi (plain loop, one multiple-ack every 50), \
            client (WarrenAMQP's public API: confirmed publish, consumer with an ack per message), \
            framework (Warren: typed JSON messages published with WarrenPublisher, handled by a Worker), \
            in-memory (the framework mode on InMemoryTransport: no broker in the path); \
            framework-foundation and in-memory-foundation (the same, reading JSON with Foundation's JSONDecoder \
            instead of Warren's fast path); the framework's tracing: framework-tracing-off (no trace context read), \
            framework-w3c (the no-op tracer, every message carrying a valid W3C traceparent), \
            framework-in-memory-tracer (swift-distributed-tracing's InMemoryTracer, a span per publish and per delivery); \
            framework-events (the worker and the publisher report job events to warren.events, nothing bound); \
            framework-events-ledger (the same, with a Ledger in this process recording them into a fresh SQLite file). \
            The raw modes publish without confirms; client publishes with confirms. Every mode sends the same \
            messages (what WarrenPublisher sends) unless --format bare. \
            For client and framework: acks/1k msg counts basic.ack frames sent per 1,000 messages (raw-multi: 20), \
            stalls the connection thread's 1 ms naps with nothing read while the prefetch window was full (the \
            broker waiting for this client's acks), wakes/1k msg how often the consuming task was resumed because \
            deliveries arrived while it waited. \
            Without --url a throwaway broker is started and stopped. The last line printed is one JSON object.
            """
    )

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option(help: "Queue to use (purged first).") var queue = "warren.bench"
    @Option(help: "Messages per mode.") var messages = 100_000
    @Option(help: "Body size in bytes.") var size = 256
    @Option(help: "Prefetch count of the consumer.") var prefetch: UInt16 = 200
    @Option(help: "Comma-separated modes, run in this order: raw, raw-multi, client, framework.")
    var mode = "raw,client,framework"
    @Option(help: "Rounds of every mode, one mode after the other; per mode the median is reported.") var runs = 1
    @Option(help: "Messages per pipelined batch of the client's confirmed publish.") var publishBatch = 1000
    @Option(help: "Handlers at once in framework mode (acks then arrive out of order when above 1).") var concurrency =
        1
    @Option(
        name: .customLong("format"),
        help:
            "What the raw and client modes send: warren (what WarrenPublisher sends, as the framework mode does) or bare (a body, no properties to speak of)."
    )
    var messageFormat: MessageFormat = .warren
    @Option(
        help:
            "How the queue is filled before each mode consumes: own (raw modes with the raw loop, unconfirmed; client and framework with their own confirmed publishers) or raw (every mode with the raw loop, unconfirmed, the same messages)."
    )
    var fill: Fill = .own

    enum Fill: String, ExpressibleByArgument {
        case own, raw
    }

    struct Result: Codable {
        var mode: String
        var messages: Int
        var size: Int
        var prefetch: Int
        var publish_msgs_per_s: Double
        var consume_msgs_per_s: Double
        var publish_confirmed: Bool
        /// CPU time of this process (every thread) per consumed message, and heap allocations per consumed message.
        var consume_cpu_us_per_msg: Double
        var consume_allocs_per_msg: Double?
        var rss_mb: Double
        var baseline: Baseline?
        var consume_ratio_vs_raw: Double?
        var publish_ratio_vs_raw: Double?
        /// Present when raw-multi ran too.
        var consume_ratio_vs_raw_multi: Double?
        /// Modes on WarrenAMQP's connection (client, framework): `basic.ack` frames sent per 1,000 messages (raw-multi
        /// sends 20), and the I/O thread's 1 ms naps with nothing read while the consumer's prefetch window was full —
        /// the broker waiting for this client's acks.
        var consume_ack_frames_per_1k_msgs: Double?
        var consume_stalls: Int?
        /// Modes on WarrenAMQP's connection: resumptions of the consuming task per 1,000 messages.
        var consume_wakeups_per_1k_msgs: Double?
    }

    struct Baseline: Codable {
        var mode: String
        var publish_msgs_per_s: Double
        var consume_msgs_per_s: Double
    }

    func run() async throws {
        let modes = mode.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let known = [
            "raw", "raw-multi", "client", "framework", "in-memory", "framework-foundation", "in-memory-foundation",
            "framework-tracing-off", "framework-w3c", "framework-in-memory-tracer", "framework-events",
            "framework-events-ledger",
        ]
        for m in modes where !known.contains(m) {
            throw ValidationError("unknown mode '\(m)' (\(known.joined(separator: ", ")))")
        }
        var broker: LocalBroker?
        let uri: String
        if let url {
            uri = url
        } else {
            print("starting a throwaway broker …")
            broker = try await LocalBroker.start()
            uri = broker!.amqpURL
        }
        defer { if let broker { Task { try? await broker.stop() } } }
        let endpoint = try AMQPEndpoint(uri: uri)
        print(
            "broker \(endpoint), \(messages) messages of \(size) bytes, prefetch \(prefetch), format \(messageFormat.rawValue), \(runs) run(s) per mode"
        )

        // Round after round of every mode (not every run of one mode, then the next): the broker gets slower or faster
        // over a long session (its message store, its garbage collector), and each mode must see the same drift.
        var samplesByMode: [String: [Sample]] = [:]
        for run in 1...max(1, runs) {
            for m in modes {
                let sample = try await measure(mode: m, endpoint: endpoint)
                print(
                    "  \(m.padding(toLength: 10, withPad: " ", startingAt: 0)) run \(run): publish \(Int(sample.publish)) msg/s, consume \(Int(sample.consume)) msg/s"
                )
                samplesByMode[m, default: []].append(sample)
            }
        }
        func perThousand(_ count: Int) -> Double { (Double(count) / Double(messages) * 10_000).rounded() / 10 }
        var results: [Result] = []
        for m in modes {
            let samples = samplesByMode[m]!
            let middle = samples.sorted { $0.consume < $1.consume }[samples.count / 2]
            // The modes on WarrenAMQP's connection: they publish with confirms, and its I/O thread counts what it did.
            let onWarrenAMQP = m == "client" || m.hasPrefix("framework")
            let io = middle.consumeCost.io
            results.append(
                Result(
                    mode: m, messages: messages, size: size, prefetch: Int(prefetch),
                    publish_msgs_per_s: median(samples.map(\.publish)).rounded(),
                    consume_msgs_per_s: middle.consume.rounded(), publish_confirmed: onWarrenAMQP && fill == .own,
                    consume_cpu_us_per_msg: middle.consumeCost.cpuMicroseconds(per: messages),
                    consume_allocs_per_msg: middle.consumeCost.allocations(per: messages),
                    rss_mb: processStatusMegabytes("VmRSS"),
                    consume_ack_frames_per_1k_msgs: onWarrenAMQP ? perThousand(io.ackFrames) : nil,
                    consume_stalls: onWarrenAMQP ? io.stalls : nil,
                    consume_wakeups_per_1k_msgs: onWarrenAMQP ? perThousand(io.consumerWakeups) : nil))
        }

        // Ratios are medians of each round's ratio (both modes measured minutes apart on the same broker), which the
        // broker's drift between rounds does not move as much as a ratio of medians.
        func roundRatio(_ mode: String, to base: String, _ value: (Sample) -> Double) -> Double? {
            guard let samples = samplesByMode[mode], let bases = samplesByMode[base] else { return nil }
            let ratios = zip(samples, bases).map { value($0) / max(value($1), 1e-9) }
            return (median(ratios) * 1000).rounded() / 1000
        }
        print("")
        printTable(
            [
                "mode", "publish msg/s", "consume msg/s", "consume/raw", "consume/raw-multi", "publish/raw",
                "confirmed", "cpu µs/msg",
                "allocs/msg", "rss MiB", "acks/1k msg", "stalls", "wakes/1k msg",
            ],
            results.map { result in
                [
                    result.mode, "\(Int(result.publish_msgs_per_s))", "\(Int(result.consume_msgs_per_s))",
                    roundRatio(result.mode, to: "raw", \.consume).map(format) ?? "-",
                    roundRatio(result.mode, to: "raw-multi", \.consume).map(format) ?? "-",
                    roundRatio(result.mode, to: "raw", \.publish).map(format) ?? "-",
                    result.publish_confirmed ? "yes" : "no", "\(result.consume_cpu_us_per_msg)",
                    result.consume_allocs_per_msg.map { "\($0)" } ?? "-", "\(result.rss_mb)",
                    result.consume_ack_frames_per_1k_msgs.map { "\($0)" } ?? "-",
                    result.consume_stalls.map { "\($0)" } ?? "-",
                    result.consume_wakeups_per_1k_msgs.map { "\($0)" } ?? "-",
                ]
            })
        var last = results.last!
        if let raw = results.first(where: { $0.mode == "raw" }), last.mode != "raw" {
            last.baseline = Baseline(
                mode: raw.mode, publish_msgs_per_s: raw.publish_msgs_per_s, consume_msgs_per_s: raw.consume_msgs_per_s)
            last.consume_ratio_vs_raw = roundRatio(last.mode, to: "raw", \.consume)
            last.publish_ratio_vs_raw = roundRatio(last.mode, to: "raw", \.publish)
        }
        if last.mode != "raw-multi" {
            last.consume_ratio_vs_raw_multi = roundRatio(last.mode, to: "raw-multi", \.consume)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if let broker { try await broker.stop() }
        print(String(decoding: try encoder.encode(last), as: UTF8.self))
    }

    struct Sample {
        var publish: Double
        var consume: Double
        var consumeCost: Cost
    }

    private func measure(mode: String, endpoint: AMQPEndpoint) async throws -> Sample {
        var quiet = Logger(label: "warren.bench")
        quiet.logLevel = .warning
        let admin = try await AMQPConnection.connect(to: endpoint, connectionName: "warren-bench-admin", logger: quiet)
        let adminChannel = try await admin.openChannel()
        try await adminChannel.queueDeclare(queue, durable: true)
        try await adminChannel.queuePurge(queue)
        defer { Task { await admin.close() } }

        let loop = RawLoop(
            host: endpoint.host, port: endpoint.port, user: endpoint.username, password: endpoint.password,
            vhost: endpoint.virtualHost, queue: queue)
        /// Fills the queue with the raw loop (unconfirmed); the publish time.
        func rawFill(format: MessageFormat) async throws -> Double {
            let count = messages
            let outbound = try benchMessages(size: size, format: format, queue: queue)
            let publishSeconds = try await onDedicatedThread { try loop.publish(count: count, cycling: outbound) }
            // Unconfirmed messages may still be on their way from the channel to the queue: wait (untimed) for all.
            var depth = 0
            for _ in 0..<600 {
                depth = try await adminChannel.queueStatus(queue).messageCount
                if depth >= count { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            guard depth == count else { throw ValidationError("queue holds \(depth) messages, expected \(count)") }
            return publishSeconds
        }

        switch mode {
        case "raw", "raw-multi":
            let count = messages
            let publishSeconds = try await rawFill(format: messageFormat)
            let prefetch = self.prefetch
            let ackEvery = mode == "raw" ? 1 : 50
            let (consumeSeconds, cost) = try await Cost.of {
                try await onDedicatedThread { try loop.consume(count: count, prefetch: prefetch, ackEvery: ackEvery) }
            }
            return Sample(
                publish: Double(count) / publishSeconds, consume: Double(count) / consumeSeconds, consumeCost: cost)
        case "framework", "framework-foundation":
            // The framework's handler reads what WarrenPublisher sends, whatever --format says.
            let filled = fill == .raw ? try await rawFill(format: .warren) : nil
            let codec: any MessageCodec = mode == "framework" ? JSONMessageCodec() : FoundationJSONCodec()
            return try await measureFramework(endpoint: endpoint, logger: quiet, filledIn: filled, codec: codec)
        case "framework-tracing-off":
            return try await measureFramework(
                endpoint: endpoint, logger: quiet, codec: JSONMessageCodec(), tracing: .disabled)
        case "framework-w3c":
            let traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            return try await measureFramework(
                endpoint: endpoint, logger: quiet, codec: JSONMessageCodec(),
                headers: ["traceparent": .string(traceParent)])
        case "framework-events":
            return try await measureFramework(
                endpoint: endpoint, logger: quiet, codec: JSONMessageCodec(), withEvents: true)
        case "framework-events-ledger":
            return try await withBenchLedger(endpoint: endpoint) {
                try await measureFramework(
                    endpoint: endpoint, logger: quiet, codec: JSONMessageCodec(), withEvents: true)
            }
        case "framework-in-memory-tracer":
            return try await measureFramework(
                endpoint: endpoint, logger: quiet, codec: JSONMessageCodec(),
                tracing: TracingOptions(tracer: InMemoryTracer()))
        case "in-memory", "in-memory-foundation":
            return try await measureInMemory(codec: mode == "in-memory" ? JSONMessageCodec() : FoundationJSONCodec())
        default:
            let connection = try await AMQPConnection.connect(
                to: endpoint, connectionName: "warren-bench", logger: quiet)
            defer { Task { await connection.close() } }
            let publishSeconds: Double
            if fill == .raw {
                publishSeconds = try await rawFill(format: messageFormat)
            } else {
                let channel = try await connection.openChannel()
                try await channel.enableConfirms()
                let outbound = clientMessages(
                    try benchMessages(size: size, format: messageFormat, queue: queue), queue: queue)
                let publishStart = DispatchTime.now()
                var sent = 0
                while sent < messages {
                    let n = min(publishBatch, messages - sent)
                    let results = await channel.publish(contentsOf: cycle(outbound, from: sent, count: n))
                    for result in results { try result.get() }
                    sent += n
                }
                publishSeconds = seconds(since: publishStart)
            }

            let consumerChannel = try await connection.openChannel()
            let consumer = try await consumerChannel.consume(queue: queue, prefetchCount: prefetch)
            let count = messages  // an @Option's getter is far from free: not once per delivery
            let (_, cost) = try await Cost.of {
                var received = 0
                for try await delivery in consumer {
                    try delivery.ack()
                    received += 1
                    if received == count { break }
                }
            }
            try await consumerChannel.close()
            return Sample(
                publish: Double(messages) / publishSeconds, consume: Double(messages) / cost.seconds, consumeCost: cost)
        }
    }
}

/// The framework mode's message: JSON with a payload that makes the body about `--size` bytes.
struct BenchMessage: WarrenMessage {
    static var messageType: String { "bench.message" }
    var id: Int
    var payload: String
}

extension Consume {
    /// Publishes with WarrenPublisher (confirmed, up to 1,000 in flight), then consumes with a Worker whose typed
    /// handler decodes each message; the clock stops when the last one is handled.
    /// - Parameter filledIn: the publish time when the queue was already filled (`--fill raw`).
    /// - Parameters:
    ///   - tracing: the publisher's and the worker's.
    ///   - headers: added to every message published.
    func measureFramework(
        endpoint: AMQPEndpoint, logger: Logger, filledIn: Double? = nil, codec: any MessageCodec,
        tracing: TracingOptions = TracingOptions(), headers: AMQPTable = [:], withEvents: Bool = false
    ) async throws -> Sample {
        let transport = RabbitMQTransport(
            endpoints: [endpoint], connectionName: "warren-bench-publisher", logger: logger)
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [])
        let count = messages
        var publishSeconds = filledIn ?? 0
        if filledIn == nil {
            let events = withEvents ? WarrenEventPublisher(transport: transport, logger: logger) : nil
            let publisher = WarrenPublisher(transport: transport, tracing: tracing, events: events)
            let publishStart = DispatchTime.now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                if let events { group.addTask { await events.sendWhileRunning() } }
                defer { group.cancelAll() }
                try await publishBenchMessages(
                    count, payload: benchPayload(size: size), to: queue, with: publisher, headers: headers)
            }
            publishSeconds = seconds(since: publishStart)
            await events?.close()
        }
        await transport.close()

        let completion = Completion(expected: count)
        let registration = HandlerRegistration(
            BenchMessage.self, queue: queue,
            options: HandlerOptions(prefetch: prefetch, maxConcurrentHandlers: concurrency, retry: .never, timeout: nil)
        ) { _, _ in completion.handledOne() }
        let workerTransport = RabbitMQTransport(
            endpoints: [endpoint], connectionName: "warren-bench-worker", logger: quietLogger)
        let cost = try await drain(
            registration, transport: workerTransport,
            configuration: WorkerConfiguration(
                codecs: CodecRegistry(default: codec), tracing: tracing,
                events: withEvents ? WarrenEventPublisher(transport: workerTransport, logger: logger) : nil),
            until: completion)
        return Sample(publish: Double(count) / publishSeconds, consume: Double(count) / cost.seconds, consumeCost: cost)
    }
}

extension Consume {
    /// Runs `body` while a ``Ledger`` records every event of `warren.events` into a fresh SQLite file (its own queue,
    /// deleted afterwards); prints how many events it had recorded when `body` ended.
    func withBenchLedger(endpoint: AMQPEndpoint, _ body: () async throws -> Sample) async throws -> Sample {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-bench-\(UUID().uuidString).sqlite"
        ).path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try await SQLiteLedgerStore(path: path, logger: quietLogger)
        let queue = "warren.bench.ledger.\(UUID().uuidString.prefix(8))"
        let ledger = Ledger(
            transport: RabbitMQTransport(
                endpoints: [endpoint], connectionName: "warren-bench-ledger", logger: quietLogger),
            store: store, queue: queue, retention: .keepEverything, logger: quietLogger)
        let running = Task { try await ledger.run() }
        try await ledger.waitUntilConsuming()
        let sample = try await body()
        let recorded = try await store.eventCount()
        ledger.shutdown()
        try await running.value
        try await store.close()
        let connection = try await AMQPConnection.connect(
            to: endpoint, connectionName: "warren-bench-cleanup", logger: quietLogger)
        let channel = try await connection.openChannel()
        for name in [queue, "\(queue).redelivered", "\(queue).dead-letters", "\(queue).topology"]
            + ["1000", "5000", "30000"].map({ "\(queue).retry.\($0)ms" })
        { _ = try? await channel.queueDelete(name) }
        await connection.close()
        FileHandle.standardError.write(Data("  ledger: \(recorded) events recorded when the worker finished\n".utf8))
        return sample
    }

    /// The framework mode on `InMemoryTransport`: the same messages and handler, no broker or socket in the path.
    func measureInMemory(codec: any MessageCodec) async throws -> Sample {
        let transport = InMemoryTransport()
        try await transport.prepare(queue: queue, delays: [])
        let publisher = WarrenPublisher(transport: transport)
        let payload = benchPayload(size: size)
        let messages = try (0..<messages).map {
            try publisher.outboundMessage(BenchMessage(id: $0, payload: payload), to: .queue(queue))
        }
        let publishStart = DispatchTime.now()
        for result in await transport.publish(contentsOf: messages) { try result.get() }
        let publishSeconds = seconds(since: publishStart)

        let completion = Completion(expected: messages.count)
        let registration = HandlerRegistration(
            BenchMessage.self, queue: queue,
            options: HandlerOptions(prefetch: prefetch, maxConcurrentHandlers: concurrency, retry: .never, timeout: nil)
        ) { _, _ in completion.handledOne() }
        let cost = try await drain(
            registration, transport: transport,
            configuration: WorkerConfiguration(codecs: CodecRegistry(default: codec)), until: completion)
        return Sample(
            publish: Double(messages.count) / publishSeconds, consume: Double(messages.count) / cost.seconds,
            consumeCost: cost)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// JSON through Foundation's `JSONEncoder` and `JSONDecoder` alone: what `JSONMessageCodec` does without its fast
/// paths, to measure what they save.
struct FoundationJSONCodec: MessageCodec {
    var contentType: String { "application/json" }
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

    init() {
        encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
    }

    func encode<M: Encodable>(_ message: M) throws -> [UInt8] { Array(try encoder.encode(message)) }
    func decode<M: Decodable>(_ type: M.Type, from body: [UInt8]) throws -> M {
        try decoder.decode(type, from: Data(body))
    }
}

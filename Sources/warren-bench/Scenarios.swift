import ArgumentParser
import Foundation
import Logging
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP

// MARK: - publish

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Confirmed publishing at several batch sizes against the raw unconfirmed loop, in one run.",
        discussion: """
            raw: librabbitmq, no confirms. raw-confirmed-batch-N: librabbitmq in confirm mode, N publishes then a \
            wait for their confirms (what the broker charges for confirms, with no Warren code). \
            raw-confirmed-window-N: the same without stopping, at most N (--window) unconfirmed. client-batch-N: WarrenAMQP, confirmed, N messages per publish(contentsOf:) \
            call awaited before the next. publisher: WarrenPublisher (typed JSON), confirmed, --window publishes in \
            flight. The last line printed is one JSON object.
            """)

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option var queue = "warren.bench.publish"
    @Option var messages = 50_000
    @Option var size = 256
    @Option(help: "Comma-separated batch sizes for the client.") var batches = "1,10,100,1000"
    @Option(help: "Publishes in flight for the raw-confirmed-window and WarrenPublisher modes.") var window = 1000
    @Option(
        help:
            "Comma-separated families to run besides raw (always run: the ratios' base): raw-confirmed, client, publisher."
    )
    var mode = "raw-confirmed,client,publisher"
    @Option(help: "Runs of the whole scenario; per mode, the run with the median ratio to raw is reported.") var runs =
        1
    @Option(
        name: .customLong("format"),
        help:
            "What the raw and client modes send: warren (what WarrenPublisher sends) or bare (a body, no properties to speak of)."
    )
    var messageFormat: MessageFormat = .warren

    struct Row: Codable {
        var mode: String
        var msgs_per_s: Double
        var ratio_vs_raw: Double
        var confirmed: Bool
        var cpu_us_per_msg: Double
        var allocs_per_msg: Double?
    }

    func run() async throws {
        let sizes = try batches.split(separator: ",").map { text -> Int in
            guard let size = Int(text.trimmingCharacters(in: .whitespaces)), size > 0 else {
                throw ValidationError("bad batch size '\(text)'")
            }
            return size
        }
        let families = Set(mode.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        for family in families where !["raw-confirmed", "client", "publisher"].contains(family) {
            throw ValidationError("unknown mode '\(family)' (raw-confirmed, client, publisher)")
        }
        let runs = max(1, self.runs)
        let rows = try await withBroker(url) { endpoint in
            var all: [[Row]] = []
            for run in 1...runs {
                if runs > 1 { print("run \(run) of \(runs)") }
                all.append(try await measure(endpoint: endpoint, sizes: sizes, families: families))
            }
            // Per mode, the run with the median ratio (each ratio is against the raw loop of its own run).
            return all[0].indices.map { index in
                all.map { $0[index] }.sorted { $0.ratio_vs_raw < $1.ratio_vs_raw }[all.count / 2]
            }
        }
        print("")
        printTable(
            ["mode", "msg/s", "vs raw", "confirmed", "cpu µs/msg", "allocs/msg"],
            rows.map {
                [
                    $0.mode, "\(Int($0.msgs_per_s))", format($0.ratio_vs_raw), $0.confirmed ? "yes" : "no",
                    "\($0.cpu_us_per_msg)", $0.allocs_per_msg.map { "\($0)" } ?? "-",
                ]
            })
        try printJSON(["publish": rows])
    }

    private func measure(endpoint: AMQPEndpoint, sizes: [Int], families: Set<String>) async throws -> [Row] {
        print(
            "broker \(endpoint), \(messages) persistent messages of \(size) bytes per mode, format \(messageFormat.rawValue)"
        )
        let outbound = try benchMessages(size: size, format: messageFormat, queue: queue)
        var rows: [Row] = []
        func add(_ mode: String, _ cost: Cost, confirmed: Bool) {
            let rate = Double(messages) / cost.seconds
            rows.append(
                Row(
                    mode: mode, msgs_per_s: rate.rounded(), ratio_vs_raw: ratio(rate, rows.first?.msgs_per_s ?? rate),
                    confirmed: confirmed,
                    cpu_us_per_msg: cost.cpuMicroseconds(per: messages), allocs_per_msg: cost.allocations(per: messages)
                ))
            print("  \(mode): \(Int(rate)) msg/s")
        }

        let queue = self.queue
        try await resetQueue(queue, endpoint: endpoint)
        let loop = RawLoop(
            host: endpoint.host, port: endpoint.port, user: endpoint.username, password: endpoint.password,
            vhost: endpoint.virtualHost, queue: queue)
        let count = messages
        let (_, raw) = try await Cost.of {
            try await onDedicatedThread { try loop.publish(count: count, cycling: outbound) }
        }
        add("raw", raw, confirmed: false)
        for batch in sizes where batch > 1 && families.contains("raw-confirmed") {
            try await resetQueue(queue, endpoint: endpoint)
            let (_, cost) = try await Cost.of {
                try await onDedicatedThread {
                    try loop.publishConfirmed(count: count, pacing: .batches(batch), cycling: outbound)
                }
            }
            add("raw-confirmed-batch-\(batch)", cost, confirmed: true)
        }
        if families.contains("raw-confirmed") {
            try await resetQueue(queue, endpoint: endpoint)
            let window = self.window
            let (_, cost) = try await Cost.of {
                try await onDedicatedThread {
                    try loop.publishConfirmed(count: count, pacing: .window(window), cycling: outbound)
                }
            }
            add("raw-confirmed-window-\(window)", cost, confirmed: true)
        }

        let connection = try await AMQPConnection.connect(
            to: endpoint, connectionName: "warren-bench-publish", logger: quietLogger)
        defer { Task { await connection.close() } }
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let amqpMessages = clientMessages(outbound, queue: queue)
        for batch in sizes where families.contains("client") {
            try await resetQueue(queue, endpoint: endpoint)
            let (_, cost) = try await Cost.of {
                var sent = 0
                while sent < count {
                    let n = min(batch, count - sent)
                    if n == 1 {
                        let message = amqpMessages[sent % amqpMessages.count]
                        try await channel.publish(message.body, routingKey: queue, properties: message.properties)
                    } else {
                        for result in await channel.publish(contentsOf: cycle(amqpMessages, from: sent, count: n)) {
                            try result.get()
                        }
                    }
                    sent += n
                }
            }
            add("client-batch-\(batch)", cost, confirmed: true)
        }

        guard families.contains("publisher") else { return rows }
        try await resetQueue(queue, endpoint: endpoint)
        let transport = RabbitMQTransport(
            endpoints: [endpoint], connectionName: "warren-bench-publisher", logger: quietLogger)
        try await transport.start()
        let publisher = WarrenPublisher(transport: transport)
        let payload = benchPayload(size: size)
        let window = self.window
        let (_, cost) = try await Cost.of {
            try await publishBenchMessages(count, payload: payload, to: queue, with: publisher, window: window)
        }
        add("publisher-window-\(window)", cost, confirmed: true)
        for batch in sizes where batch > 1 {
            try await resetQueue(queue, endpoint: endpoint)
            let (_, cost) = try await Cost.of {
                var sent = 0
                while sent < count {
                    let n = min(batch, count - sent)
                    let chunk = (sent..<(sent + n)).map { BenchMessage(id: $0, payload: payload) }
                    for result in await publisher.publish(contentsOf: chunk, to: .queue(queue)) { _ = try result.get() }
                    sent += n
                }
            }
            add("publisher-batch-\(batch)", cost, confirmed: true)
        }
        await transport.close()
        try await resetQueue(queue, endpoint: endpoint)
        return rows
    }
}

// MARK: - latency

/// A message that carries when it was sent, on this process's monotonic clock.
struct TimedMessage: WarrenMessage {
    static var messageType: String { "bench.timed" }
    var sentNanos: UInt64
    var payload: String
}

struct Latency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish-to-handler latency at a fixed rate: p50, p99, p99.9 for the client and the framework.",
        discussion: """
            Messages are published (confirmed, without waiting for one confirm before the next send) at --rate per \
            second for --seconds, each carrying its send time; the consumer (a plain WarrenAMQP consumer, then a Worker \
            with a typed JSON handler) records the time from send to the handler. The last line printed is JSON.
            """)

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option var queue = "warren.bench.latency"
    @Option(help: "Messages per second.") var rate = 1000
    @Option var seconds = 10
    @Option var size = 256
    @Option(help: "Comma-separated modes: client, framework.") var mode = "client,framework"

    struct Row: Codable {
        var mode: String
        var messages: Int
        var rate: Int
        var p50_ms: Double
        var p90_ms: Double
        var p99_ms: Double
        var p999_ms: Double
        var max_ms: Double
    }

    func run() async throws {
        let modes = mode.split(separator: ",").map(String.init)
        let rows = try await withBroker(url) { endpoint in
            var rows: [Row] = []
            for mode in modes { rows.append(try await measure(mode: mode, endpoint: endpoint)) }
            return rows
        }
        print("")
        printTable(
            ["mode", "messages", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"],
            rows.map {
                [
                    $0.mode, "\($0.messages)", "\($0.rate)", "\($0.p50_ms)", "\($0.p90_ms)", "\($0.p99_ms)",
                    "\($0.p999_ms)", "\($0.max_ms)",
                ]
            })
        try printJSON(["latency": rows])
    }

    private func measure(mode: String, endpoint: AMQPEndpoint) async throws -> Row {
        try await resetQueue(queue, endpoint: endpoint)
        let total = rate * seconds
        let samples = Mutex<[UInt64]>([])
        samples.withLock { $0.reserveCapacity(total) }
        let done = AsyncStream.makeStream(of: Void.self)
        let record: @Sendable (UInt64) -> Void = { sent in
            let latency = DispatchTime.now().uptimeNanoseconds - sent
            let count = samples.withLock { samples in
                samples.append(latency)
                return samples.count
            }
            if count == total { done.continuation.yield() }
        }
        let queue = self.queue
        var stop: @Sendable () async throws -> Void
        switch mode {
        case "client":
            let connection = try await AMQPConnection.connect(
                to: endpoint, connectionName: "warren-bench-latency", logger: quietLogger)
            let channel = try await connection.openChannel()
            let consumer = try await channel.consume(queue: queue, prefetchCount: 200)
            let decoder = JSONDecoder()
            let consuming = Task {
                for try await delivery in consumer {
                    record(try decoder.decode(TimedMessage.self, from: Data(delivery.body)).sentNanos)
                    try delivery.ack()
                }
            }
            stop = {
                consuming.cancel()
                await connection.close()
            }
        case "framework":
            let registration = HandlerRegistration(
                TimedMessage.self, queue: queue, options: HandlerOptions(prefetch: 200, retry: .never, timeout: nil)
            ) {
                message, _ in record(message.sentNanos)
            }
            let worker = Worker(
                transport: RabbitMQTransport(
                    endpoints: [endpoint], connectionName: "warren-bench-latency", logger: quietLogger),
                registrations: [registration], logger: quietLogger)
            let running = Task { try await worker.run() }
            try await worker.waitUntilConsuming()
            stop = {
                worker.shutdown()
                try await running.value
            }
        default:
            throw ValidationError("unknown mode '\(mode)' (client, framework)")
        }

        let connection = try await AMQPConnection.connect(
            to: endpoint, connectionName: "warren-bench-latency-publisher", logger: quietLogger)
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let payload = String(repeating: "x", count: max(0, size - 40))
        let properties = AMQPProperties(
            contentType: "application/json", deliveryMode: .persistent, type: TimedMessage.messageType)
        let encoder = JSONEncoder()
        let interval = Duration.seconds(1) / rate
        let clock = ContinuousClock()
        var next = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<total {
                next = next.advanced(by: interval)
                let body = Array(
                    try encoder.encode(TimedMessage(sentNanos: DispatchTime.now().uptimeNanoseconds, payload: payload)))
                group.addTask { try await channel.publish(body, routingKey: queue, properties: properties) }
                try await clock.sleep(until: next)
            }
            try await group.waitForAll()
        }
        for await _ in done.stream { break }
        try await stop()
        await connection.close()

        let sorted = samples.withLock { $0 }.sorted()
        func percentile(_ p: Double) -> Double {
            let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
            return (Double(sorted[max(0, index)]) / 1e6 * 100).rounded() / 100
        }
        let row = Row(
            mode: mode, messages: sorted.count, rate: rate, p50_ms: percentile(0.5), p90_ms: percentile(0.9),
            p99_ms: percentile(0.99),
            p999_ms: percentile(0.999), max_ms: percentile(1))
        print("  \(mode): p50 \(row.p50_ms) ms, p99 \(row.p99_ms) ms, p99.9 \(row.p999_ms) ms")
        return row
    }
}

// MARK: - retry

struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Throughput of a flow where every message fails once and succeeds on its retry, against plain success.",
        discussion: """
            The same messages are handled twice: once where every handler succeeds, once where the first attempt of \
            each throws (retry through a 1 ms delay queue: a confirmed copy, an ack, the broker's dead-lettering back). \
            Rates count completed messages. The last line printed is JSON.
            """)

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option var queue = "warren.bench.retry"
    @Option var messages = 20_000
    @Option var size = 256
    @Option(
        help:
            "Handlers at once: each failed attempt waits for its retry copy's confirm, so this sets how many confirms are in flight."
    )
    var concurrency = 4

    struct Row: Codable {
        var mode: String
        var messages: Int
        var completed_msgs_per_s: Double
        var deliveries_per_s: Double
        var ratio_vs_success: Double
    }

    func run() async throws {
        let rows = try await withBroker(url) { endpoint in
            let success = try await measure(failFirst: false, endpoint: endpoint)
            let retry = try await measure(failFirst: true, endpoint: endpoint)
            return [
                Row(
                    mode: "success", messages: messages, completed_msgs_per_s: success.rounded(),
                    deliveries_per_s: success.rounded(), ratio_vs_success: 1),
                Row(
                    mode: "fail-once", messages: messages, completed_msgs_per_s: retry.rounded(),
                    deliveries_per_s: (2 * retry).rounded(), ratio_vs_success: ratio(retry, success)),
            ]
        }
        print("")
        printTable(
            ["mode", "messages", "completed msg/s", "deliveries/s", "vs success"],
            rows.map {
                [
                    $0.mode, "\($0.messages)", "\(Int($0.completed_msgs_per_s))", "\(Int($0.deliveries_per_s))",
                    format($0.ratio_vs_success),
                ]
            })
        try printJSON(["retry": rows])
    }

    private func measure(failFirst: Bool, endpoint: AMQPEndpoint) async throws -> Double {
        let queue = "\(self.queue).\(failFirst ? "fail-once" : "success")"
        try await resetQueue(queue, endpoint: endpoint)
        let transport = RabbitMQTransport(
            endpoints: [endpoint], connectionName: "warren-bench-retry", logger: quietLogger)
        try await transport.start()
        let policy = RetryPolicy(maxAttempts: 2, backoff: .explicit([.milliseconds(1)]))
        try await transport.prepare(queue: queue, delays: failFirst ? [.milliseconds(1)] : [])
        let publisher = WarrenPublisher(transport: transport)
        let payload = benchPayload(size: size)
        let count = messages
        try await publishBenchMessages(count, payload: payload, to: queue, with: publisher)
        await transport.close()

        let completion = Completion(expected: count)
        struct FirstAttempt: Error {}
        let registration = HandlerRegistration(
            BenchMessage.self, queue: queue,
            options: HandlerOptions(prefetch: 200, maxConcurrentHandlers: concurrency, retry: policy, timeout: nil)
        ) { _, context in
            if failFirst && context.attempt == 1 { throw FirstAttempt() }
            completion.handledOne()
        }
        let cost = try await drain(
            registration, endpoint: endpoint, connectionName: "warren-bench-retry-worker", until: completion)
        let rate = Double(count) / cost.seconds
        print("  \(failFirst ? "fail-once" : "success"): \(Int(rate)) completed msg/s")
        return rate
    }
}

// MARK: - memory

struct Memory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Peak RSS of a worker process draining a backlog of each size (e.g. 10k and 500k).",
        discussion: """
            For each size the queue is filled (raw publisher), then a fresh worker process (warren-bench backlog-child) \
            consumes all of it with a typed JSON handler and reports its peak RSS (VmHWM). The last line is JSON.
            """)

    @Option(help: "Broker URI; default: start a throwaway broker.") var url: String?
    @Option var queue = "warren.bench.memory"
    @Option(help: "Comma-separated backlog sizes.") var backlogs = "10000,500000"
    @Option var size = 256

    struct Row: Codable {
        var backlog: Int
        var peak_rss_mb: Double
        var seconds: Double
        var ratio_vs_smallest: Double
    }

    func run() async throws {
        let sizes = backlogs.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let rows = try await withBroker(url) { endpoint in
            var rows: [Row] = []
            for backlog in sizes {
                try await resetQueue(queue, endpoint: endpoint)
                let loop = RawLoop(
                    host: endpoint.host, port: endpoint.port, user: endpoint.username, password: endpoint.password,
                    vhost: endpoint.virtualHost, queue: queue)
                let messages = try benchMessages(size: size, format: .warren, queue: queue)
                _ = try await onDedicatedThread { try loop.publish(count: backlog, cycling: messages) }
                try await waitForDepth(queue, backlog, endpoint: endpoint)
                print("  backlog of \(backlog) ready; draining it in a fresh process …")
                let (peak, cost) = try await Cost.of { try await runChild(endpoint: endpoint, messages: backlog) }
                rows.append(
                    Row(
                        backlog: backlog, peak_rss_mb: peak, seconds: (cost.seconds * 10).rounded() / 10,
                        ratio_vs_smallest: ratio(peak, rows.first?.peak_rss_mb ?? peak)))
                print("  backlog \(backlog): peak RSS \(peak) MiB")
            }
            return rows
        }
        print("")
        printTable(
            ["backlog", "peak RSS MiB", "drain s", "vs smallest"],
            rows.map {
                ["\($0.backlog)", "\($0.peak_rss_mb)", "\($0.seconds)", format($0.ratio_vs_smallest)]
            })
        try printJSON(["memory": rows])
    }

    private func runChild(endpoint: AMQPEndpoint, messages: Int) async throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Bundle.main.executablePath ?? CommandLine.arguments[0])
        process.arguments = [
            "backlog-child", "--url", uriWithCredentials(endpoint), "--queue", queue, "--messages", "\(messages)",
        ]
        let output = Pipe()
        process.standardOutput = output
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard status == 0, let peak = Double(text.split(separator: "\n").last ?? "") else {
            throw RawLoop.Failure(description: "backlog-child failed (\(status)): \(text)")
        }
        return peak
    }
}

/// The worker process of the memory scenario: drains `--messages` from the queue and prints its peak RSS in MiB.
struct BacklogChild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backlog-child", abstract: "(internal) the memory scenario's worker", shouldDisplay: false)

    @Option var url: String
    @Option var queue: String
    @Option var messages: Int

    func run() async throws {
        let completion = Completion(expected: messages)
        let registration = HandlerRegistration(
            BenchMessage.self, queue: queue, options: HandlerOptions(prefetch: 200, retry: .never, timeout: nil)
        ) {
            _, _ in completion.handledOne()
        }
        _ = try await drain(
            registration, endpoint: try AMQPEndpoint(uri: url), connectionName: "warren-bench-backlog",
            until: completion)
        print(processStatusMegabytes("VmHWM"))
    }
}

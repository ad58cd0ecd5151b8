import ArgumentParser
import CMallocCounter
import Foundation
import Logging
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLocalBroker

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the process spent on a piece of work: wall time, CPU time (every thread) and heap allocations.
struct Cost {
    var seconds: Double
    var cpuSeconds: Double
    var allocations: UInt64
    /// What WarrenAMQP's I/O threads did meanwhile (nothing for the raw loop).
    var io: IOStatistics.Snapshot

    /// Measures `body`; the process's other activity at the time (the I/O threads) is included, which is the point.
    static func of<T>(_ body: () async throws -> T) async rethrows -> (T, Cost) {
        let meter = Meter()
        let result = try await body()
        return (result, meter.read())
    }

    /// Measures from its creation to ``read()``.
    struct Meter {
        let start = DispatchTime.now()
        let cpu = processCPUSeconds()
        let allocations = warren_malloc_count()
        let io = IOStatistics.snapshot

        func read() -> Cost {
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            return Cost(
                seconds: elapsed, cpuSeconds: processCPUSeconds() - cpu,
                allocations: warren_malloc_count() - allocations,
                io: IOStatistics.snapshot - io)
        }
    }

    func cpuMicroseconds(per count: Int) -> Double { (cpuSeconds / Double(max(1, count)) * 1e6 * 10).rounded() / 10 }

    /// `nil` where allocations cannot be counted (the counting allocator works with glibc only).
    func allocations(per count: Int) -> Double? {
        warren_malloc_counting() == 0 ? nil : (Double(allocations) / Double(max(1, count)) * 10).rounded() / 10
    }
}

func processCPUSeconds() -> Double {
    var usage = rusage()
    #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    #else
        getrusage(RUSAGE_SELF, &usage)
    #endif
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Runs `body` against `url`, or against a throwaway broker started (and stopped) for it.
func withBroker<T>(_ url: String?, _ body: (AMQPEndpoint) async throws -> T) async throws -> T {
    guard url == nil else { return try await body(AMQPEndpoint(uri: url!)) }
    print("starting a throwaway broker …")
    let broker = try await LocalBroker.start()
    do {
        let result = try await body(AMQPEndpoint(uri: broker.amqpURL))
        try await broker.stop()
        return result
    } catch {
        try? await broker.stop()
        throw error
    }
}

var quietLogger: Logger {
    var logger = Logger(label: "warren.bench")
    logger.logLevel = .warning
    return logger
}

/// Declares `queue` (durable) and empties it.
func resetQueue(_ queue: String, endpoint: AMQPEndpoint) async throws {
    let admin = try await AMQPConnection.connect(
        to: endpoint, connectionName: "warren-bench-admin", logger: quietLogger)
    let channel = try await admin.openChannel()
    try await channel.queueDeclare(queue, durable: true)
    _ = try await channel.queuePurge(queue)
    await admin.close()
}

/// Waits (untimed) until `queue` holds `count` messages: unconfirmed publishes may still be on their way.
func waitForDepth(_ queue: String, _ count: Int, endpoint: AMQPEndpoint) async throws {
    let admin = try await AMQPConnection.connect(
        to: endpoint, connectionName: "warren-bench-admin", logger: quietLogger)
    defer { Task { await admin.close() } }
    let channel = try await admin.openChannel()
    for _ in 0..<6000 {
        if try await channel.queueStatus(queue).messageCount >= count { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw RawLoop.Failure(description: "queue \(queue) did not reach \(count) messages")
}

/// Prints a table: a header row, then rows, columns right-aligned except the first.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        print(
            row.enumerated().map { index, cell in
                index == 0
                    ? cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[index] - cell.count) + cell
            }.joined(separator: "  "))
    }
}

/// Prints `value` as one line of JSON (the last line of every scenario).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func ratio(_ value: Double, _ baseline: Double) -> Double {
    baseline == 0 ? 0 : (value / baseline * 1000).rounded() / 1000
}

func format(_ ratio: Double) -> String { String(format: "%.2fx", ratio) }

/// A memory figure of this process from Linux's `/proc/self/status` (`VmRSS` now, `VmHWM` peak), in MiB to one
/// decimal; 0 where that file does not exist.
func processStatusMegabytes(_ field: String) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
        let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return (kilobytes / 1024 * 10).rounded() / 10
}

/// The URI of `endpoint`, password included (for a child process of the benchmark only; never printed).
func uriWithCredentials(_ endpoint: AMQPEndpoint) -> String {
    func encode(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text }
    return
        "amqp://\(encode(endpoint.username)):\(encode(endpoint.password))@\(endpoint.host):\(endpoint.port)/\(encode(endpoint.virtualHost))"
}

/// Counts handled messages and lets the benchmark wait until all `expected` were handled.
final class Completion: Sendable {
    let expected: Int
    private let handled = Mutex(0)
    private let done = AsyncStream.makeStream(of: Void.self)

    init(expected: Int) {
        self.expected = expected
    }

    /// Called by a handler once per message.
    func handledOne() {
        if handled.withLock({ value -> Int in
            value += 1
            return value
        }) == expected {
            done.continuation.yield()
        }
    }

    func wait() async {
        for await _ in done.stream { break }
    }
}

/// Runs a worker with `registration` until `completion` is reached, then shuts it down; returns what that cost from
/// the moment the worker consumes (like the raw and client modes, whose clocks start after `basic.consume`: the
/// connection and the topology's declarations are not counted).
func drain(
    _ registration: HandlerRegistration, endpoint: AMQPEndpoint, connectionName: String,
    configuration: WorkerConfiguration = WorkerConfiguration(), until completion: Completion
) async throws -> Cost {
    try await drain(
        registration,
        transport: RabbitMQTransport(endpoints: [endpoint], connectionName: connectionName, logger: quietLogger),
        configuration: configuration, until: completion)
}

func drain(
    _ registration: HandlerRegistration, transport: any WarrenTransport,
    configuration: WorkerConfiguration = WorkerConfiguration(),
    until completion: Completion
) async throws -> Cost {
    let worker = Worker(
        transport: transport, registrations: [registration], configuration: configuration, logger: quietLogger)
    let running = Task { try await worker.run() }
    do {
        try await worker.waitUntilConsuming(timeout: .seconds(60))
    } catch {
        worker.shutdown()
        throw error
    }
    let meter = Cost.Meter()
    await completion.wait()
    let cost = meter.read()
    worker.shutdown()
    try await running.value
    return cost
}

/// Publishes `count` `BenchMessage`s to `queue` with `publisher`, `window` publishes in flight.
func publishBenchMessages(
    _ count: Int, payload: String, to queue: String, with publisher: WarrenPublisher, headers: AMQPTable = [:],
    window: Int = 1000
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for id in 0..<count {
            if id >= window { try await group.next() }
            group.addTask {
                try await publisher.publish(BenchMessage(id: id, payload: payload), to: .queue(queue), headers: headers)
            }
        }
        try await group.waitForAll()
    }
}

/// What the messages of the `consume` and `publish` scenarios look like. Every mode of a run sends the same kind, so
/// the broker does the same work for each and the ratios compare the clients alone.
enum MessageFormat: String, ExpressibleByArgument, Codable {
    /// Exactly what `WarrenPublisher` sends for a `BenchMessage`: a JSON body, content type, persistent, message id,
    /// timestamp, `type` and the `warren-published-at` header. The framework mode always sends these.
    case warren
    /// A body of `--size` bytes with a content type and persistence only (about 28 bytes of properties): RabbitMQ
    /// handles such a message faster than one whose properties exceed 64 bytes (see docs/performance.md).
    case bare
}

/// Distinct messages the raw and client modes cycle through (a bound on the memory they take).
let benchMessagePool = 1000

/// ``benchMessagePool`` messages for `queue` in `format` (built before any clock starts); a scenario sends them over
/// and over.
func benchMessages(size: Int, format: MessageFormat, queue: String) throws -> [OutboundMessage] {
    let count = benchMessagePool
    switch format {
    case .bare:
        let message = OutboundMessage(
            body: [UInt8](repeating: UInt8(ascii: "x"), count: size), destination: .queue(queue),
            properties: AMQPProperties(contentType: "application/octet-stream", deliveryMode: .persistent))
        return Array(repeating: message, count: count)
    case .warren:
        let publisher = WarrenPublisher(transport: InMemoryTransport())
        let payload = benchPayload(size: size)
        return try (0..<count).map {
            try publisher.outboundMessage(BenchMessage(id: $0, payload: payload), to: .queue(queue))
        }
    }
}

/// The `payload` that makes a `BenchMessage`'s JSON body about `size` bytes.
func benchPayload(size: Int) -> String { String(repeating: "x", count: max(0, size - 30)) }

/// `count` elements of `pool` from position `start` on, wrapping around.
func cycle<T>(_ pool: [T], from start: Int, count: Int) -> [T] {
    (start..<(start + count)).map { pool[$0 % pool.count] }
}

/// The same messages as the client's `AMQPOutboundMessage`s, straight into `queue`.
func clientMessages(_ messages: [OutboundMessage], queue: String) -> [AMQPOutboundMessage] {
    messages.map { AMQPOutboundMessage(body: $0.body, routingKey: queue, properties: $0.properties) }
}

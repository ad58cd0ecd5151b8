import Foundation
import Logging
import Synchronization
import Warren
import WarrenAMQP

/// Runs a worker's registrations on an in-memory transport with a manual clock, so a test can push a message into a
/// handler and assert what happened — acked, retried after which delay, dead-lettered for which reason — without a
/// broker and without sleeping through retry delays.
///
/// ```swift
/// let harness = try await WarrenTestHarness(registrations: [
///     HandlerRegistration(WelcomeEmail.self, queue: "emails", options: .init(retry: policy)) { email, context in … },
/// ])
/// let first = try await harness.send(WelcomeEmail(userId: "1", email: "a@flaky.example"), to: "emails")
/// #expect(first.outcome == .retried(delay: .seconds(1), nextAttempt: 2))
/// let second = try await harness.advance(by: .seconds(1))   // the retry comes back and is handled
/// await harness.stop()
/// ```
public final class WarrenTestHarness: Sendable {
    public let clock: ManualClock
    public let transport: InMemoryTransport<ManualClock>
    public let worker: Worker
    private let settled: SettlementBuffer
    private let running: Task<Void, any Error>

    /// Starts a worker for `registrations`; returns once it consumes every queue.
    public init(
        registrations: [HandlerRegistration], configuration: WorkerConfiguration = WorkerConfiguration(),
        logger: Logger = Logger(label: "warren.testing", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws {
        let clock = ManualClock()
        let transport = InMemoryTransport(clock: clock)
        let settled = SettlementBuffer()
        let worker = Worker(
            transport: transport, registrations: registrations, configuration: configuration, logger: logger,
            observer: { settled.append($0) })
        self.clock = clock
        self.transport = transport
        self.worker = worker
        self.settled = settled
        self.running = Task { try await worker.run() }
        // The worker is ready once every queue it consumes has been prepared; a message sent earlier still waits in
        // its queue, so this only saves tests from racing the start.
        try await Task.sleep(for: .milliseconds(10))
    }

    /// Publishes `message` to `queue` (as a publisher would: JSON, its type, a message id) and waits until the
    /// worker settled it.
    @discardableResult
    public func send<M: WarrenMessage>(
        _ message: M, to queue: String, messageID: String = UUID().uuidString, headers: AMQPTable = [:],
        timeout: Duration = .seconds(10)
    ) async throws -> SettlementEvent {
        let properties = AMQPProperties(
            contentType: "application/json", headers: headers.isEmpty ? nil : headers, deliveryMode: .persistent,
            messageID: messageID, timestamp: Date(), type: M.messageType)
        return try await sendRaw(try JSONMessageCodec().encode(message), properties: properties, to: queue, timeout: timeout)
    }

    /// Publishes any body and properties (malformed input, unknown types…) and waits until the worker settled it.
    @discardableResult
    public func sendRaw(
        _ body: [UInt8], properties: AMQPProperties, to queue: String, timeout: Duration = .seconds(10)
    ) async throws -> SettlementEvent {
        try await transport.publish(body, to: .queue(queue), properties: properties)
        return try await nextSettlement(timeout: timeout)
    }

    /// Moves the clock forward, which releases the retries whose delay has passed, and waits for the next settlement.
    @discardableResult
    public func advance(by duration: Duration, timeout: Duration = .seconds(10)) async throws -> SettlementEvent {
        clock.advance(by: duration)
        return try await nextSettlement(timeout: timeout)
    }

    /// Waits for the next delivery the worker settles.
    /// - Throws: when none is settled within `timeout` (real time).
    public func nextSettlement(timeout: Duration = .seconds(10)) async throws -> SettlementEvent {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let event = settled.takeFirst() { return event }
            guard clock.now < deadline else { throw HarnessError("no delivery was settled within \(timeout)") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Settlements that happened and were not yet taken by ``nextSettlement(timeout:)``.
    public var unreadSettlements: [SettlementEvent] { settled.all }

    /// The dead letters of `queue`.
    public func deadLetters(of queue: String) -> [InMemoryTransport<ManualClock>.StoredMessage] {
        transport.deadLetters(of: queue)
    }

    /// Stops the worker (a graceful shutdown) and waits for it.
    public func stop() async {
        worker.shutdown()
        _ = try? await running.value
    }
}

final class SettlementBuffer: Sendable {
    private let events = Mutex<[SettlementEvent]>([])

    func append(_ event: SettlementEvent) { events.withLock { $0.append(event) } }
    func takeFirst() -> SettlementEvent? { events.withLock { $0.isEmpty ? nil : $0.removeFirst() } }
    var all: [SettlementEvent] { events.withLock { $0 } }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

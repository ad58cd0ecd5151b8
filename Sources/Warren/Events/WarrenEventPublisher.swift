import DequeModule
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WarrenAMQP

/// What a dead letter's event may carry of the message; a host's hook (``EventOptions/redact``) may change it.
public struct DeadLetterContent: Sendable {
    public var body: [UInt8]
    public var headers: AMQPTable

    public init(body: [UInt8], headers: AMQPTable) {
        self.body = body
        self.headers = headers
    }
}

extension WarrenEvent {
    /// Puts a dead letter's headers (as text) and body (up to `bodyLimit` bytes: UTF-8 text when it is, else base64)
    /// in this event, as a ledger shows them.
    package mutating func attach(_ content: DeadLetterContent, bodyLimit: Int) {
        headers = content.headers.mapValues { $0.stringValue ?? "\($0)" }
        let kept = content.body.prefix(bodyLimit)
        bodyTruncated = content.body.count > bodyLimit
        // A cut may split a character: up to three bytes are let go.
        let cuttable = content.body.count > bodyLimit ? min(3, kept.count) : 0
        if let text = (0...cuttable).lazy.compactMap({ String(validating: kept.dropLast($0), as: UTF8.self) }).first {
            body = text
            bodyEncoding = "utf8"
        } else {
            body = Data(kept).base64EncodedString()
            bodyEncoding = "base64"
        }
    }
}

/// How ``WarrenEvents`` batches and bounds what it publishes.
public struct EventOptions: Sendable {
    /// The topic exchange the events go to (declared, durable, by whoever publishes); routing key `<queue>.<event>`.
    public var exchange: String
    /// Events per AMQP message, at most.
    public var batchSize: Int
    /// How long an event may wait for its batch to fill before it is sent anyway.
    public var flushInterval: Duration
    /// Events held while the broker is slow or away; past it, new events are dropped and counted in
    /// `warren_events_dropped_total`. Handlers never wait for events.
    public var bufferLimit: Int
    /// The most of a dead letter's body an event carries (64 KiB); longer ones are cut and marked `body_truncated`.
    public var deadLetterBodyLimit: Int
    /// Per message type: what a dead letter's event may carry of the message (redact fields, drop headers); return
    /// `nil` to leave the body out. Types without a hook carry body and headers as they are.
    public var redact: [String: @Sendable (DeadLetterContent) -> DeadLetterContent?]

    public init(
        exchange: String = "warren.events", batchSize: Int = 200, flushInterval: Duration = .milliseconds(100),
        bufferLimit: Int = 50_000, deadLetterBodyLimit: Int = 64 * 1024,
        redact: [String: @Sendable (DeadLetterContent) -> DeadLetterContent?] = [:]
    ) {
        self.exchange = exchange
        self.batchSize = max(1, batchSize)
        self.flushInterval = flushInterval
        self.bufferLimit = max(1, bufferLimit)
        self.deadLetterBodyLimit = max(0, deadLetterBodyLimit)
        self.redact = redact
    }
}

/// Publishes job events (``WarrenEvent``) for a ledger: a ``Worker`` reports `started` and every settlement, a
/// ``WarrenPublisher`` every confirmed publish, when given one.
///
/// Events go in batches (many per AMQP message, flushed by count and by ``EventOptions/flushInterval``) to the topic
/// exchange `warren.events`, routing key `<queue>.<event>`, message type `warren.events`, persistent and confirmed,
/// without `mandatory`: until a ledger binds a queue, the broker drops them at almost no cost. They never hold up a
/// handler: recording one takes a lock; when the broker is slow or away, events wait in a bounded buffer, and past it
/// new ones are dropped and counted (`warren_events_dropped_total`).
///
/// A `Service`: in a `ServiceGroup`, it sends what is left when the group shuts down (for at most 10 s). A worker
/// given it also sends what is left when it stops (for at most 5 s: a broker that is away does not hold up a
/// shutdown).
public final class WarrenEvents: Service, Sendable {
    public let transport: any WarrenTransport
    public let options: EventOptions
    let logger: Logger
    private let dropped: Counter
    private struct State {
        var buffer = Deque<WarrenEvent>()
        var flusher: Task<Void, Never>?
        var closed = false
        var exchangeDeclared = false
        /// Whether events are being dropped now (logged once per spell).
        var dropping = false
    }
    private let state = Mutex(State())
    /// Serializes flushes (the background one and ``flush()``).
    private let flushing = AsyncMutex()

    public init(transport: any WarrenTransport, options: EventOptions = EventOptions(), logger: Logger = Logger(label: "warren.events")) {
        self.transport = transport
        self.options = options
        self.logger = logger
        dropped = Counter(label: WarrenMetrics.eventsDropped.name, dimensions: [("exchange", options.exchange)])
    }

    /// Records `event` to be sent with the next batch; returns at once. Drops it (and counts it) when the buffer is full.
    public func record(_ event: WarrenEvent) {
        enum Outcome { case buffered, startFlusher, dropped, firstDropped, closed }
        let outcome = state.withLock { state -> Outcome in
            guard !state.closed else { return .closed }
            guard state.buffer.count < options.bufferLimit else {
                defer { state.dropping = true }
                return state.dropping ? .dropped : .firstDropped
            }
            state.buffer.append(event)
            return state.flusher == nil ? .startFlusher : .buffered
        }
        switch outcome {
        case .startFlusher: startFlushing()
        case .firstDropped:
            dropped.increment()
            logger.warning(
                "event buffer full: dropping events until the broker takes them again",
                metadata: ["buffer_limit": .stringConvertible(options.bufferLimit)])
        case .dropped: dropped.increment()
        case .buffered, .closed: break
        }
    }

    /// Events waiting to be sent.
    public var pending: Int { state.withLock { $0.buffer.count } }

    private func startFlushing() {
        let task = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: options.flushInterval)
                await flushOnce()
            }
        }
        let superfluous = state.withLock { state -> Bool in
            guard state.flusher == nil, !state.closed else { return true }
            state.flusher = task
            return false
        }
        if superfluous { task.cancel() }
    }

    /// Sends everything recorded so far, in batches; returns when the broker confirmed them, or when it could not
    /// (those events stay buffered for the next attempt).
    public func flush() async {
        while await flushOnce() {}
    }

    /// ``flush()``, for at most `timeout` (a broker that is away must not hold up a shutdown); what is not sent by
    /// then stays buffered.
    public func flush(timeout: Duration) async {
        // The flush runs on its own, not in a task group, which would wait for a flush stuck behind the background
        // one (itself waiting for the broker) even after the timeout.
        let done = AwaitableState(false)
        let flushing = Task {
            await self.flush()
            done.update { $0 = true }
        }
        _ = await done.wait(until: { $0 }, timeout: timeout)
        flushing.cancel()
    }

    /// Sends up to one flush interval's worth; returns whether more is waiting and the last send worked.
    @discardableResult
    private func flushOnce() async -> Bool {
        await flushing.withLock {
            let taken = state.withLock { state -> [WarrenEvent] in
                let count = min(state.buffer.count, options.batchSize * 32)
                defer { state.buffer.removeFirst(count) }
                return Array(state.buffer.prefix(count))
            }
            guard !taken.isEmpty else { return false }
            let events = Self.foldingStarts(taken)
            do {
                try await declareExchangeOnce()
                // One AMQP message per routing key and at most `batchSize` events, in the order each key first
                // appeared (a job's start usually goes out before its settlement; readers still order by time).
                var groups: [String: [WarrenEvent]] = [:]
                var order: [String] = []
                for event in events {
                    let key = "\(event.queue).\(event.event.rawValue)"
                    if groups[key] == nil { order.append(key) }
                    groups[key, default: []].append(event)
                }
                var outbound: [OutboundMessage] = []
                let now = Date()
                for routingKey in order {
                    let events = groups[routingKey]!
                    var start = events.startIndex
                    while start < events.endIndex {
                        let end = min(start + options.batchSize, events.endIndex)
                        outbound.append(OutboundMessage(
                            body: WarrenEvent.encodeBatch(events[start..<end]),
                            destination: .broadcast(exchange: options.exchange, routingKey: routingKey),
                            properties: AMQPProperties(
                                contentType: "application/json", deliveryMode: .persistent, timestamp: now, type: "warren.events")))
                        start = end
                    }
                }
                let results = await transport.publish(contentsOf: outbound)
                if let failure = results.lazy.compactMap({ result -> (any Error)? in
                    if case .failure(let error) = result { return error } else { return nil }
                }).first {
                    throw failure
                }
            } catch {
                // Back to the front of the buffer (as far as it has room), to be sent with the next flush.
                let lost = state.withLock { state -> Int in
                    state.exchangeDeclared = false
                    let room = max(0, options.bufferLimit - state.buffer.count)
                    let kept = taken.prefix(room)
                    state.buffer.insert(contentsOf: kept, at: 0)
                    return taken.count - kept.count
                }
                if lost > 0 { dropped.increment(by: Int64(lost)) }
                logger.debug("events not sent; kept for the next flush", metadata: ["error": "\(error)", "events": .stringConvertible(taken.count)])
                return false
            }
            return state.withLock { state in
                if state.buffer.count < options.bufferLimit / 2 { state.dropping = false }
                return !state.buffer.isEmpty
            }
        }
    }

    /// `events` with each `started` whose attempt settled in the same flush folded into the settlement
    /// (``WarrenEvent/startedAtMs``): most jobs take less than a flush interval, and one event each halves what the
    /// broker carries and the ledger writes for them.
    static func foldingStarts(_ events: [WarrenEvent]) -> [WarrenEvent] {
        struct Attempt: Hashable {
            var messageID: String
            var queue: String
            var attempt: Int?
        }
        var starts: [Attempt: Int] = [:]
        var folded: Set<Int> = []
        var result = events
        for (index, event) in events.enumerated() {
            guard let id = event.messageID else { continue }
            let attempt = Attempt(messageID: id, queue: event.queue, attempt: event.attempt)
            switch event.event {
            case .started:
                starts[attempt] = index
            case .ack, .retry, .deadLetter, .requeued:
                guard let start = starts.removeValue(forKey: attempt) else { continue }
                folded.insert(start)
                result[index].startedAtMs = events[start].atMs
                result[index].queueWaitMs = result[index].queueWaitMs ?? events[start].queueWaitMs
                result[index].queueWaitApproxS = result[index].queueWaitApproxS ?? events[start].queueWaitApproxS
            default:
                continue
            }
        }
        guard !folded.isEmpty else { return events }
        return result.enumerated().filter { !folded.contains($0.offset) }.map(\.element)
    }

    private func declareExchangeOnce() async throws {
        guard !state.withLock({ $0.exchangeDeclared }) else { return }
        try await transport.start()
        try await transport.declareTopicExchange(options.exchange)
        state.withLock { $0.exchangeDeclared = true }
    }

    /// Sends what is left (for at most `timeout`) and stops the background flushes; events recorded later are ignored.
    public func close(timeout: Duration = .seconds(10)) async {
        await flush(timeout: timeout)
        let flusher = state.withLock { state in
            state.closed = true
            defer { state.flusher = nil }
            return state.flusher
        }
        flusher?.cancel()
    }

    /// Waits for the `ServiceGroup`'s graceful shutdown (or cancellation), then sends what is left.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }
}

/// A lock for async code: one holder at a time, the others wait their turn (in order) without blocking a thread.
package final class AsyncMutex: Sendable {
    private let state = Mutex<(held: Bool, waiters: Deque<CheckedContinuation<Void, Never>>)>((false, []))

    package init() {}

    package func withLock<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { continuation in
            let acquired = state.withLock { state -> Bool in
                if state.held {
                    state.waiters.append(continuation)
                    return false
                }
                state.held = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let next = state.waiters.popFirst() { return next }
            state.held = false
            return nil
        }
        next?.resume()
    }
}

import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WarrenAMQP

/// The RabbitMQ transport: one connection, a confirm-mode channel for publishing, a channel per consumer.
///
/// It declares, per work queue, the topology described by ``WarrenTopology``, and publishes every copy with
/// `mandatory` and publisher confirms, so a copy that reaches no queue is an error, never a silent loss.
///
/// The connection comes back by itself: once started, any call that finds it lost (or its publishing channel closed)
/// reconnects first, trying every endpoint. A ``publish(_:to:properties:)`` to a queue or an exchange that fails
/// because the connection was lost is sent again on the new connection, with ``reconnect`` backoff, for at most
/// ``publishRecoveryTimeout``; after that the caller gets the error. A message whose confirm was lost with the
/// connection may therefore arrive twice (at-least-once), never zero times without an error.
///
/// The transport logs its connection's outages, once each: an error when the connection is found lost, a notice with
/// the outage's length when it is back.
///
/// A host that only publishes adds the transport to its `ServiceGroup` (it is a `Service`: ``run()``), ahead of the
/// services that publish through it, so that it closes after them.
public final class RabbitMQTransport: WarrenTransport, Service {
    public let endpoints: [AMQPEndpoint]
    public let connectionName: String
    public let queueType: WarrenTopology.QueueType
    /// The waits between attempts when a publish waits for the connection to come back.
    public let reconnect: RecoveryPolicy
    /// How long a publish may wait for the connection to come back before its error reaches the caller.
    public let publishRecoveryTimeout: Duration
    /// Where messages due at a time (``Destination/due(queue:at:)``) wait: declared on the first such publish.
    public let dueCascade: DelayCascade
    let logger: Logger
    private let state = Mutex(State())
    private let connectionUp: Gauge
    private let reconnects: Counter

    private struct State: Sendable {
        var lifecycle = Lifecycle.idle
        /// Since when the connection is lost, while it is (for the log and the metrics).
        var outageStarted: ContinuousClock.Instant?
        /// Numbers the connection attempts, so that a late one knows it was superseded.
        var attempts = 0
    }

    /// Where the transport stands: one value, so that a connection kept after ``close()``, or an attempt without a
    /// ``start()``, cannot be written.
    private enum Lifecycle: Sendable {
        /// Not started yet: what starts the transport by itself (a publish, ``deadLetters(of:limit:)``) does.
        case idle
        /// ``start()`` was called.
        case started(Link)
        /// ``close()`` was called (and ``start()`` not since): what would start the transport by itself does not.
        case closed

        var isStarted: Bool {
            if case .started = self { return true }
            return false
        }

        /// The connection made last (it may be lost since), while started.
        var current: Connected? {
            guard case .started(let link) = self else { return nil }
            switch link {
            case .none: return nil
            case .up(let connected): return connected
            case .connecting(_, _, let previous): return previous
            }
        }
    }

    /// The connection of a started transport.
    private enum Link: Sendable {
        case none
        case up(Connected)
        /// A (re)connection in progress, which every caller that needs the connection awaits; `previous` is what it
        /// repairs.
        case connecting(attempt: Int, Task<Connected, any Error>, previous: Connected?)
    }

    private struct Connected: Sendable {
        var connection: AMQPConnection
        var publisher: AMQPChannel
        var topology: TopologyDeclarer

        var isUsable: Bool { connection.isOpen && publisher.isOpen && topology.isOpen }
    }

    /// - Parameters:
    ///   - endpoints: the nodes to try, in order, on every (re)connection.
    ///   - reconnect: the waits between attempts while a publish waits for the connection to come back.
    ///   - publishRecoveryTimeout: how long a publish may wait for it; `.zero` reports a lost connection at once.
    ///   - dueCascade: where messages due at a time wait (the default's exchanges and queues are `warren.due.…`).
    public init(
        endpoints: [AMQPEndpoint], connectionName: String = "warren", queueType: WarrenTopology.QueueType = .classic,
        reconnect: RecoveryPolicy = RecoveryPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(5)),
        publishRecoveryTimeout: Duration = .seconds(30), dueCascade: DelayCascade = DelayCascade(),
        logger: Logger = Logger(label: "warren.rabbitmq")
    ) {
        self.dueCascade = dueCascade
        self.endpoints = endpoints
        self.connectionName = connectionName
        self.queueType = queueType
        self.reconnect = reconnect
        self.publishRecoveryTimeout = publishRecoveryTimeout
        self.logger = logger
        connectionUp = Gauge(label: WarrenMetric.connectionUp.name, dimensions: [("connection", connectionName)])
        reconnects = Counter(label: WarrenMetric.reconnects.name, dimensions: [("connection", connectionName)])
    }

    /// Runs for leadership of `election` on a connection of its own, which never reconnects (see
    /// ``LeaderElection``): returns the term when this process won, `nil` when another holds it.
    /// - Throws: `AMQPError` when no endpoint accepts.
    @_spi(WarrenTransport)
    public func campaign(for election: String) async throws -> (any LeadershipTerm)? {
        // A standby campaigns every few seconds, each time on a new connection: its connects and the broker's
        // refusals are not news (the election logs a change of leader).
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        return try await RabbitMQLeadershipTerm.campaign(
            election, endpoints: endpoints, connectionName: "\(connectionName) leader \(election)", logger: quiet)
    }

    /// Connects (or makes sure the connection is up, reconnecting once if it was lost).
    /// - Throws: `AMQPError` when no endpoint accepts.
    public func start() async throws {
        state.withLock { state in
            if !state.lifecycle.isStarted { state.lifecycle = .started(.none) }
        }
        _ = try await ready()
    }

    /// Starts the transport unless it was closed: for calls documented to connect by themselves.
    private func startUnlessClosed() {
        state.withLock { state in
            if case .idle = state.lifecycle { state.lifecycle = .started(.none) }
        }
    }

    /// The live connection and channels, repaired first when they were lost.
    private func ready() async throws -> Connected {
        enum Next {
            case use(Connected)
            case wait(Task<Connected, any Error>)
        }
        let next: Next = try state.withLock { state in
            guard case .started(let link) = state.lifecycle else {
                throw AMQPError(.connectionClosed, message: "the RabbitMQ transport is not started")
            }
            let previous: Connected?
            switch link {
            case .connecting(_, let task, _): return .wait(task)
            case .up(let connected) where connected.isUsable: return .use(connected)
            case .up(let connected): previous = connected
            case .none: previous = nil
            }
            state.attempts += 1
            let attempt = state.attempts
            // A join: every caller that needs the connection awaits this one attempt; nothing cancels it (a caller that
            // gives up leaves it to the others), and it ends by itself, connected or failed.
            let task = Task { try await self.establish(attempt, repairing: previous) }
            state.lifecycle = .started(.connecting(attempt: attempt, task, previous: previous))
            return .wait(task)
        }
        switch next {
        case .use(let connected): return connected
        case .wait(let task): return try await task.value
        }
    }

    /// Reopens what is closed: only the channels when the connection is alive, else everything.
    private func establish(_ attempt: Int, repairing previous: Connected?) async throws -> Connected {
        if let previous, !previous.connection.isOpen, let reason = previous.connection.closeReason {
            outageBegins("connection lost", reason)
        }
        do {
            let connected: Connected
            if let previous, previous.connection.isOpen {
                connected = Connected(
                    connection: previous.connection,
                    publisher: previous.publisher.isOpen
                        ? previous.publisher : try await openPublisher(on: previous.connection),
                    topology: previous.topology.isOpen
                        ? previous.topology
                        : try await TopologyDeclarer(
                            connection: previous.connection, queueType: queueType, cascade: dueCascade))
            } else {
                if let previous { await previous.connection.close() }
                let connection = try await AMQPConnection.connect(
                    to: endpoints, connectionName: connectionName, logger: logger)
                do {
                    connected = Connected(
                        connection: connection, publisher: try await openPublisher(on: connection),
                        topology: try await TopologyDeclarer(
                            connection: connection, queueType: queueType, cascade: dueCascade))
                } catch {
                    await connection.close()
                    throw error
                }
            }
            let stale = state.withLock { state -> Bool in
                guard case .started(.connecting(attempt, _, _)) = state.lifecycle else { return true }
                state.lifecycle = .started(.up(connected))
                return false
            }
            // Closed (or closed and started again) while connecting: the new connection must not outlive the transport.
            if stale {
                await connected.connection.close()
            } else {
                connectionBack()
            }
            return connected
        } catch {
            state.withLock { state in
                guard case .started(.connecting(attempt, _, let previous)) = state.lifecycle else { return }
                state.lifecycle = .started(previous.map(Link.up) ?? .none)
            }
            if Self.scope(of: error, connection: nil) == .connection {
                outageBegins(previous == nil ? "cannot connect to the broker" : "connection lost", error)
            }
            throw error
        }
    }

    private func openPublisher(on connection: AMQPConnection) async throws -> AMQPChannel {
        let publisher = try await connection.openChannel()
        try await publisher.enableConfirms()
        return publisher
    }

    /// The connection, once started: for this package's tools that need more than the transport offers (the ledger
    /// opens channels of its own on it); not for users, whose code would then depend on the connection it replaces.
    package var connection: AMQPConnection? { state.withLock { $0.lifecycle.current?.connection } }

    @_spi(WarrenTransport)
    public func prepare(queue: String, delays: Set<Duration>) async throws {
        try await ready().topology.declare(queue: queue, delays: delays)
    }

    @_spi(WarrenTransport)
    public func consume(queue: String, prefetch: UInt16) async throws -> TransportConsumer {
        let channel = try await ready().connection.openChannel()
        do {
            return consumer(try await channel.consume(queue: queue, prefetchCount: prefetch), on: channel)
        } catch {
            try? await channel.close()
            throw error
        }
    }

    private func consumer(_ consumer: AMQPConsumer, on channel: AMQPChannel) -> TransportConsumer {
        let settler = ChannelSettler(channel: channel)
        return TransportConsumer(
            next: {
                guard let delivery = try await consumer.next() else { return nil }
                return TransportDelivery(
                    body: delivery.body, properties: delivery.properties, redelivered: delivery.redelivered,
                    exchange: delivery.exchange, routingKey: delivery.routingKey, tag: delivery.deliveryTag,
                    settler: settler)
            },
            cancel: { try await consumer.cancel() },
            close: { try? await channel.close() },
            received: { consumer.receivedDeliveries })
    }

    @_spi(WarrenTransport)
    public func prepare(flow: PartitionedFlow) async throws {
        try await ready().topology.declare(flow: flow)
    }

    /// The exclusive consumer of `queue` on a channel of its own; `nil` when the broker refuses it because another
    /// consumer holds the queue (403 "in exclusive use"), which closes only that channel. Another refusal (403 for
    /// missing permissions) is thrown: a process that may not read a partition must not stand by for it for ever.
    @_spi(WarrenTransport)
    public func consumeExclusively(queue: String, prefetch: UInt16) async throws -> TransportConsumer? {
        let channel = try await ready().connection.openChannel()
        let exclusive: AMQPConsumer
        do {
            exclusive = try await channel.consume(
                queue: queue, prefetchCount: prefetch, exclusive: true, consumerTag: Self.holderTag())
        } catch let error as AMQPError
            where error.replyCode == 403 && (error.replyText ?? "").contains("in exclusive use")
        {
            try? await channel.close()
            return nil
        } catch {
            try? await channel.close()
            throw error
        }
        return consumer(exclusive, on: channel)
    }

    /// A partition holder's consumer tag, which names the process to whoever lists the queue's consumers
    /// (`rabbitmqctl list_consumers`, the management API): `warren-holder.<host>.<pid>.<random>`.
    static func holderTag() -> String {
        let host = ProcessInfo.processInfo.hostName.unicodeScalars.filter { $0.isASCII && $0.value > 32 }.prefix(100)
        let random = UUID().uuidString.prefix(8).lowercased()
        return
            "warren-holder.\(String(String.UnicodeScalarView(host))).\(ProcessInfo.processInfo.processIdentifier).\(random)"
    }

    /// A consumer of the flow's members queue, on a channel of its own; the count is that queue's consumer count.
    @_spi(WarrenTransport)
    public func join(flow: PartitionedFlow) async throws -> FlowMembership {
        let connected = try await ready()
        try await connected.topology.declare(flow: flow)
        let channel = try await connected.connection.openChannel()
        do {
            // Without acks: a message someone publishes there is dropped at once, rather than held unacked until the
            // broker's consumer_timeout closes this channel.
            let member = try await channel.consume(queue: flow.membersQueue, noAck: true)
            return FlowMembership(
                members: { try await channel.queueStatus(flow.membersQueue).consumerCount },
                leave: {
                    try? await member.cancel()
                    try? await channel.close()
                })
        } catch {
            try? await channel.close()
            throw error
        }
    }

    /// Takes the queue's return mark (`<queue>.returns`, one message), and publishes the new one, confirmed.
    @_spi(WarrenTransport)
    public func countReturn(of messageKey: String, in queue: String) async throws -> Int {
        let connected = try await ready()
        let previous = try await connected.topology.takeReturnMark(of: queue).flatMap(ReturnMark.init(json:))
        let mark = ReturnMark(message: messageKey, returns: previous?.counted(messageKey) ?? 1)
        try await connected.publisher.publish(
            mark.json, exchange: "", routingKey: PartitionedFlow.returnsQueue(of: queue), mandatory: true,
            properties: AMQPProperties(contentType: "application/json", deliveryMode: .persistent))
        return mark.returns
    }

    /// Publishes with `mandatory` and waits for the broker's confirm.
    ///
    /// A publish to `.queue` or `.exchange` that fails because the connection was lost is sent again once the
    /// transport has reconnected, for at most ``publishRecoveryTimeout``. Retry and dead-letter copies (`.delay`,
    /// `.deadLetters`) are not: they are copies of a delivery that came on the lost connection, which the broker
    /// delivers again anyway, so the caller must requeue rather than wait.
    /// - Throws: `AMQPError` `.unroutable`, `.nacked`, `.timeout` (no confirm within the channel's bound), a channel
    ///   error (e.g. 404 for a missing exchange), or the connection error once the recovery time is spent.
    @_spi(WarrenTransport)
    public func publish(_ body: [UInt8], to destination: Destination, properties: AMQPProperties) async throws {
        let waitsForRecovery: Bool =
            switch destination {
            case .queue, .exchange, .broadcast, .due, .partitioned: publishRecoveryTimeout > .zero
            case .delay, .deadLetters: false
            }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: publishRecoveryTimeout)
        var failures = 0
        while true {
            var connected: Connected?
            do {
                connected = try await ready()
                try await publish(body, to: destination, properties: properties, on: connected!)
                return
            } catch {
                guard waitsForRecovery, Self.scope(of: error, connection: connected?.connection) == .connection else {
                    throw error
                }
                failures += 1
                let delay = reconnect.delay(beforeAttempt: failures, sample: Double.random(in: 0..<1))
                guard clock.now.advanced(by: delay) < deadline, state.withLock({ $0.lifecycle.isStarted }) else {
                    throw error
                }
                logger.debug(
                    "publishing: waiting for the connection to come back",
                    metadata: [
                        "error": "\(error)", "attempt": .stringConvertible(failures),
                        "retry_in_ms": .stringConvertible(delay.milliseconds),
                    ])
                try await Task.sleep(for: delay)
            }
        }
    }

    private func publish(
        _ body: [UInt8], to destination: Destination, properties: AMQPProperties, on connected: Connected
    ) async throws {
        let (exchange, routingKey) = try await route(destination, on: connected)
        try await connected.publisher.publish(
            body, exchange: exchange, routingKey: routingKey, mandatory: destination.isMandatory, properties: properties
        )
    }

    /// The exchange and routing key of `destination` (declaring a delay queue, or the due cascade, on first use).
    private func route(_ destination: Destination, on connected: Connected) async throws -> (
        exchange: String, routingKey: String
    ) {
        switch destination {
        case .queue(let queue):
            return ("", queue)
        case .delay(let queue, let delay):
            try await connected.topology.ensureDelayQueue(queue: queue, delay: delay)
            return ("", WarrenTopology(queue: queue, queueType: queueType).delayQueue(for: delay))
        case .deadLetters(let queue):
            return (WarrenTopology.deadLetterExchange, queue)
        case .due(let queue, let dueTime):
            guard try DelayCascade.steps(toQueue: queue, at: dueTime) > 0 else { return ("", queue) }
            try await connected.topology.ensureCascade(deliveringTo: queue)
            // The delay is counted from now, after the declarations and any outage that held the publish: the message
            // is not late by them.
            let steps = try DelayCascade.steps(toQueue: queue, at: dueTime)
            guard steps > 0 else { return ("", queue) }
            return (dueCascade.entryExchange, DelayCascade.routingKey(steps: steps, queue: queue))
        case .partitioned(let flow):
            // Declared on first use, as a worker declares it: a publisher may come first.
            try await connected.topology.declare(flow: flow)
            return (flow.name, "")
        case .exchange(let name, let key), .broadcast(let name, let key):
            return (name, key)
        }
    }

    /// Declares a durable topic exchange on the topology channel.
    @_spi(WarrenTransport)
    public func declareTopicExchange(_ name: String) async throws {
        startUnlessClosed()
        try await ready().topology.declareTopicExchange(name)
    }

    /// Publishes the batch pipelined on the publishing channel: one round of confirms for all of it. Messages that
    /// fail because the connection was lost are sent again one by one, as ``publish(_:to:properties:)`` would.
    @_spi(WarrenTransport)
    public func publish(contentsOf messages: [OutboundMessage]) async -> [Result<Void, any Error>] {
        guard !messages.isEmpty else { return [] }
        var results: [Result<Void, any Error>]
        var connection: AMQPConnection?
        do {
            let connected = try await ready()
            connection = connected.connection
            var outbound: [AMQPOutboundMessage] = []
            outbound.reserveCapacity(messages.count)
            for message in messages {
                let (exchange, routingKey) = try await route(message.destination, on: connected)
                outbound.append(
                    AMQPOutboundMessage(
                        body: message.body, exchange: exchange, routingKey: routingKey,
                        mandatory: message.destination.isMandatory,
                        properties: message.properties))
            }
            results = await connected.publisher.publish(contentsOf: outbound).map { $0.mapError { $0 as any Error } }
        } catch {
            results = Array(repeating: .failure(error), count: messages.count)
        }
        for (index, result) in results.enumerated() {
            guard case .failure(let error) = result, Self.scope(of: error, connection: connection) == .connection else {
                continue
            }
            let message = messages[index]
            do {
                try await publish(message.body, to: message.destination, properties: message.properties)
                results[index] = .success(())
            } catch {
                results[index] = .failure(error)
            }
        }
        return results
    }

    /// What a failure of one of this transport's calls takes down.
    enum FailureScope: Equatable {
        /// The connection is gone (or was never made): reconnecting helps, and a publish may be sent again.
        case connection
        /// A channel closed or a consumer was cancelled on a live connection: reopening them helps, but what the
        /// broker refused on that channel (a publish to a missing exchange) would be refused again.
        case channel
        /// The request itself was refused (unroutable, nacked, a topology conflict, refused credentials, a bad
        /// argument): it would fail again.
        case request
    }

    /// The one classification of this transport's errors, behind both ``isRecoverable(_:)`` and the publish retry.
    /// - Parameter connection: the connection the call used, when known: a channel error on a connection that is
    ///   gone is the connection's.
    static func scope(of error: any Error, connection: AMQPConnection?) -> FailureScope {
        guard let error = error as? AMQPError else { return .request }
        switch error.code {
        case .connectionLost, .connectionFailed, .connectionClosed: return .connection
        case .channelClosed, .consumerCancelled, .timeout:
            return connection.map { !$0.isOpen } ?? true ? .connection : .channel
        default: return .request
        }
    }

    @_spi(WarrenTransport)
    public func isRecoverable(_ error: any Error) -> Bool {
        Self.scope(of: error, connection: connection) != .request
    }

    @_spi(WarrenTransport)
    public func isConsumerCancellation(_ error: any Error) -> Bool {
        (error as? AMQPError)?.code == .consumerCancelled
    }

    /// Logs the start of an outage, once per outage: whoever needs the connection next reconnects.
    private func outageBegins(_ what: String, _ error: any Error) {
        let first = state.withLock { state in
            defer { if state.outageStarted == nil { state.outageStarted = .now } }
            return state.outageStarted == nil
        }
        if first {
            connectionUp.record(0)
            logger.error("\(what); reconnecting", metadata: ["error": "\(error)"])
        }
    }

    private func connectionBack() {
        let started = state.withLock { state in
            defer { state.outageStarted = nil }
            return state.outageStarted
        }
        connectionUp.record(1)
        if let started {
            reconnects.increment()
            logger.notice(
                "connection recovered",
                metadata: ["outage_ms": .stringConvertible((ContinuousClock.now - started).milliseconds)])
        }
    }

    /// Pauses or resumes the recurring job `schedule` (see ``Scheduler``): while paused, its leader publishes no run.
    /// Takes effect at the schedule's next tick. Connects when the transport is not connected yet (unless closed).
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a name no schedule can have; the connection's error.
    public func setSchedulePaused(_ paused: Bool, schedule: String) async throws {
        guard LeadershipNames.isValid(schedule) else {
            throw WarrenError(.invalidConfiguration, "no schedule can be named '\(schedule)'")
        }
        startUnlessClosed()
        let channel = try await ready().connection.openChannel()
        let queue = LeadershipNames.pauseQueue(schedule)
        do {
            try await channel.queueDeclare(
                queue, durable: true, arguments: RabbitMQLeadershipTerm.stateQueueArguments)
            if paused {
                try await channel.enableConfirms()
                try await channel.publish(
                    Array("{\"paused\":true}".utf8), routingKey: queue, mandatory: true,
                    properties: AMQPProperties(
                        contentType: "application/json", deliveryMode: .persistent, timestamp: Date()))
            } else {
                _ = try await channel.queuePurge(queue)
            }
        } catch {
            try? await channel.close()
            throw error
        }
        try? await channel.close()
    }

    /// The directory the leader of the scheduler of `scope` keeps (``ScheduleDirectory``), each schedule's pause flag
    /// read now from its pause queue; `nil` when no scheduler of that scope has led on this broker yet. Connects when
    /// the transport is not connected yet (unless closed).
    ///
    /// The directory is read without being taken (it returns to its queue); while another reader holds it for that
    /// moment it cannot be seen, so a read that finds nothing looks again a few times before answering `nil`.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a scope no scheduler can have, or a directory that is
    ///   not one (someone else's message in its queue); the connection's error.
    public func scheduleDirectory(scope: String? = nil) async throws -> ScheduleDirectory? {
        if let scope, !LeadershipNames.isValid(scope) {
            throw WarrenError(.invalidConfiguration, "no scheduler's scope can be '\(scope)'")
        }
        startUnlessClosed()
        let connection = try await ready().connection
        let queue = ScheduleDirectory.queue(scope: scope)
        var body: [UInt8]?
        for attempt in 0..<5 where body == nil {
            if attempt > 0 { try await Task.sleep(for: .milliseconds(100)) }
            let channel = try await connection.openChannel()
            do {
                body = try await channel.get(queue: queue, noAck: false)?.delivery.body
            } catch let error as AMQPError where error.replyCode == 404 {
                return nil
            } catch {
                try? await channel.close()
                throw error
            }
            // Closing the channel returns the unacknowledged directory to its queue.
            try? await channel.close()
        }
        guard let body else { return nil }
        guard body.count <= ScheduleDirectory.maximumBytes,
            var directory = try? JSONDecoder().decode(ScheduleDirectory.self, from: Data(body))
        else {
            throw WarrenError(
                .invalidConfiguration, "the queue \(queue) holds something other than a schedule directory")
        }
        // Someone else's directory could list anything: only names a schedule can have, as many as a scheduler holds.
        directory.schedules = Array(
            directory.schedules.filter { LeadershipNames.isValid($0.stateName) }.prefix(
                ScheduleDirectory.maximumSchedules))
        var channel = try await connection.openChannel()
        do {
            for index in directory.schedules.indices {
                do {
                    let pauseQueue = LeadershipNames.pauseQueue(directory.schedules[index].stateName)
                    directory.schedules[index].paused = try await channel.queueStatus(pauseQueue).messageCount > 0
                } catch let error as AMQPError where error.replyCode == 404 {
                    directory.schedules[index].paused = false
                    channel = try await connection.openChannel()  // the broker closed the other on the 404
                }
            }
        } catch {
            try? await channel.close()
            throw error
        }
        try? await channel.close()
        return directory
    }

    /// Asks the leader of the scheduler for a run of schedule `stateName` (``ScheduleDirectory/Entry/stateName``) now,
    /// paused or not; returns once the broker holds the request (the leader publishes the run when it takes it, with
    /// message id `<name>@manual-<request id>`: asking twice with one request id runs it once with an idempotency
    /// store). Connects when the transport is not connected yet (unless closed).
    /// - Parameters:
    ///   - requestID: 1–64 of `A-Z a-z 0-9 . _ -`; a new one by default.
    ///   - requestedBy: who asks, for the leader's log line.
    /// - Returns: the request id.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a name or request id out of those characters, or a
    ///   schedule no leader has prepared on this broker; `AMQPError` `.nacked` when 100 requests wait already; the
    ///   connection's error.
    @discardableResult
    public func triggerSchedule(
        _ stateName: String, requestID: String = UUID().uuidString.lowercased(), requestedBy: String? = nil
    ) async throws -> String {
        guard LeadershipNames.isValid(stateName) else {
            throw WarrenError(.invalidConfiguration, "no schedule can be named '\(stateName)'")
        }
        guard ScheduleTrigger.isValidRequestID(requestID) else {
            throw WarrenError(.invalidConfiguration, "a request id must be 1–64 of [A-Za-z0-9._-]")
        }
        let body = try JSONEncoder().encode(ScheduleTrigger.Body(requestID: requestID, requestedBy: requestedBy))
        startUnlessClosed()
        do {
            try await publish(
                Array(body), to: .queue(LeadershipNames.triggerQueue(stateName)),
                properties: AMQPProperties(
                    contentType: "application/json", deliveryMode: .persistent, timestamp: Date(),
                    type: "warren.schedule.trigger"))
        } catch let error as AMQPError where error.code == .unroutable {
            throw WarrenError(
                .invalidConfiguration, "no leader has prepared a schedule named '\(stateName)' on this broker")
        }
        return requestID
    }

    /// The dead letters of the work queue `queue`, oldest first, at most `limit`: read without being taken (they stay
    /// in the dead letters). Connects when the transport is not connected yet (unless it was closed).
    /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` when `queue` has no dead-letter queue
    ///   (no worker declared it), or the connection's error.
    public func deadLetters(of queue: String, limit: Int? = nil) async throws -> [DeadLetter] {
        startUnlessClosed()
        let name = WarrenTopology(queue: queue, queueType: queueType).deadLetterQueue
        let channel = try await ready().connection.openChannel()
        let available: Int
        do {
            available = try await channel.queueStatus(name).messageCount
        } catch let error as AMQPError where error.replyCode == 404 {
            throw WarrenError(
                .invalidConfiguration, "there is no queue '\(name)': no worker has declared '\(queue)' on this broker")
        } catch {
            try? await channel.close()
            throw error
        }
        var letters: [DeadLetter] = []
        do {
            while letters.count < min(available, limit ?? available), let result = try await channel.get(queue: name) {
                letters.append(DeadLetter(body: result.delivery.body, properties: result.delivery.properties))
            }
        } catch {
            try? await channel.close()
            throw error
        }
        try? await channel.close()  // unacknowledged: every one goes back to the dead letters, in order
        return letters
    }

    /// Whether the transport's connection is open right now.
    public var isConnected: Bool { state.withLock { $0.lifecycle.current?.connection.isOpen ?? false } }

    /// Starts the transport (see ``start()``), then keeps it connected until the `ServiceGroup` shuts down gracefully
    /// or the task is cancelled, and closes it.
    ///
    /// While it runs, a lost connection is made again by itself, with ``reconnect``'s waits, without waiting for a
    /// publish to need it: a host that only publishes is connected again soon after its broker comes back.
    /// - Throws: the error of ``start()`` when no endpoint accepts: a host that cannot reach its broker at start
    ///   exits, and its supervisor starts it again.
    public func run() async throws {
        try await start()
        await cancelWhenGracefulShutdown { await self.keepConnected() }
        await close()
    }

    /// Waits for the connection to end, then makes it again (retrying with ``reconnect``'s waits); until cancelled.
    private func keepConnected() async {
        var attempts = 0
        while !Task.isCancelled, state.withLock({ $0.lifecycle.isStarted }) {
            if let connection = state.withLock({ $0.lifecycle.current?.connection }), connection.isOpen {
                attempts = 0
                for await event in connection.events() {
                    if case .closed = event { break }
                }
                continue
            }
            do {
                _ = try await ready()
            } catch {
                attempts += 1
                let delay = reconnect.delay(beforeAttempt: attempts, sample: Double.random(in: 0..<1))
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// Closes the connection; publishes, ``deadLetters(of:limit:)`` and declarations after this throw until ``start()`` is
    /// called again (they do not reopen a closed transport by themselves).
    public func close() async {
        let (connected, pending) = state.withLock { state -> (Connected?, Task<Connected, any Error>?) in
            defer { state.lifecycle = .closed }
            guard case .started(let link) = state.lifecycle else { return (nil, nil) }
            switch link {
            case .none: return (nil, nil)
            case .up(let connected): return (connected, nil)
            case .connecting(_, let task, let previous): return (previous, task)
            }
        }
        await connected?.connection.close()
        _ = try? await pending?.value  // a connection made meanwhile closes itself (see establish)
        connectionUp.record(0)
    }
}

/// Acks and requeues on the channel the deliveries came from.
struct ChannelSettler: DeliverySettler {
    let channel: AMQPChannel

    func ack(_ tag: UInt64) throws { try channel.ack(deliveryTag: tag) }
    func requeue(_ tag: UInt64) throws { try channel.nack(deliveryTag: tag, requeue: true) }
    var canSettle: Bool { channel.isOpen }
}

/// The pacing decisions of a connection's I/O thread: how long it sleeps, whether it lets a busy stream of deliveries
/// gather before reading it, when the acks it holds go out, when a queued ack wakes it, and when it looks for overdue
/// publisher confirms.
///
/// On this kind of machine the broker, not the client, is the bottleneck, so every rule trades the client's frames and
/// wake-ups per message (fewer leave the broker more CPU) against the one thing that must never happen: the broker
/// waiting for acks that this client holds. The figures behind each constant are in docs/performance.md.
///
/// Pure value: the I/O thread (``ConnectionCore``) reports what happened — a pass over the socket ended, a sleep ended,
/// a delivery was read — and carries out what it is told. It never touches a socket, a clock or librabbitmq, so every
/// rule is a unit test that feeds events and checks decisions.
///
/// Guarantees, given that the thread follows the decisions:
/// - A held ack goes out at most ``ackBatchDelay`` after it was made when it continues a contiguous run, at most
///   ``ackDelay`` after when it waits behind a gap (plus at most one ``briefSleep``, the longest the thread sleeps while
///   it holds acks).
/// - The thread never sleeps longer than a quarter of the negotiated heartbeat interval, so librabbitmq (which sends
///   and checks heartbeats only while the thread reads) never misses one.
/// - Nothing is gathered while some consumer's prefetch window is at least half used.
struct IOLoopStateMachine {
    // MARK: The rules' constants

    /// The most frames one pass reads before the thread turns to its commands (publishes, acks, methods) again, so that
    /// a flood of deliveries cannot starve them.
    static let framesPerPass = 2048

    /// How long a contiguous run of held acks may wait for more before it goes out as one `multiple` ack. Fewer ack
    /// frames are less work for the broker: holding acks this long, or until a batch (``ackBatch(prefetch:)``) waits,
    /// consumed faster than one ack per read pass (the figures: docs/performance.md, "How the figures moved").
    static let ackBatchDelay: Duration = .milliseconds(1)
    /// How long an ack may wait behind a gap (an earlier delivery still being handled) before it goes out on its own.
    /// Not tuned by measurement: it bounds how long a slow handler keeps the broker counting its neighbours'
    /// deliveries as unacknowledged.
    static let ackDelay: Duration = .milliseconds(5)
    /// How many held acks make the thread send every one of them, gaps or not. A bound on what the thread holds, not a
    /// tuned figure: four times the largest batch.
    static let heldAcksLimit = 256
    /// A batch of acks is this share of the prefetch: a quarter. Alternated against it, half, an eighth and a sixteenth
    /// measured slower (docs/performance.md, "Tried and dropped").
    static let ackBatchSharePerPrefetch = 4
    /// The largest batch, and the batch without a prefetch. Holds the batch's time bound, not its size, in charge on
    /// very wide windows.
    static let largestAckBatch = 64
    /// From this prefetch on, a plain ack does not wake a briefly sleeping thread until a batch of them waits. Below
    /// it the window is too narrow: with a prefetch of 1 every delivery waits for the previous ack.
    static let lazyAcksFromPrefetch: UInt16 = 8

    /// The longest sleep while acks are held, or may be queued without a wake-up: it bounds how late they go out.
    static let briefSleep: Duration = .milliseconds(1)
    /// How long after a delivery that needs an ack the connection counts as busy: its consumers' acks are expected
    /// soon, and they come without waking the thread, so it sleeps only briefly.
    static let busyWindow: Duration = .milliseconds(20)
    /// The longest sleep of an idle thread. With heartbeats, a quarter of their interval when that is shorter.
    static let longestSleep: Duration = .seconds(1)

    /// How long the thread waits, once the socket is readable, before reading a busy stream of deliveries. The broker
    /// sends such a stream in pieces of one to four deliveries; waiting lets the next pieces arrive, so that one `recv`,
    /// one consumer wake-up and one ack frame cover several times as many deliveries, for less client CPU per delivery
    /// (measured with and without: docs/performance.md, "Gathering deliveries"). Costs at most this much latency, and only under load; commands
    /// queued meanwhile wait as long.
    static let gatherDelay: Duration = .microseconds(300)
    /// The deliveries read since the last sleep from which the stream counts as busy: a lone delivery (light load) is
    /// read at once.
    static let gatherAfterDeliveries = 2

    /// How often, at most, the thread looks for publishes whose confirm is overdue.
    static let confirmCheckInterval: Duration = .milliseconds(100)

    // MARK: Rules that depend only on a channel's prefetch

    /// The contiguous acks held before they go out as one `multiple` ack: a quarter of the prefetch, at least 1, at
    /// most ``largestAckBatch`` (which is also the batch without a prefetch, `prefetch` 0).
    static func ackBatch(prefetch: UInt16) -> Int {
        prefetch == 0 ? largestAckBatch : max(1, min(largestAckBatch, Int(prefetch) / ackBatchSharePerPrefetch))
    }

    /// How many plain acks may wait in the inbox of a briefly sleeping thread before one wakes it (a batch), or `nil`
    /// when every ack is to wake it (a window narrower than ``lazyAcksFromPrefetch``).
    static func lazyAckLimit(prefetch: UInt16) -> Int? {
        prefetch == 0 || prefetch >= lazyAcksFromPrefetch ? ackBatch(prefetch: prefetch) : nil
    }

    // MARK: Waking the thread

    /// How the thread sleeps, as the tasks that queue commands see it.
    enum Sleep: Equatable {
        case awake
        /// At most ``briefSleep``: a lazy command is picked up soon without a wake-up.
        case brief
        /// Until woken, a heartbeat is due or ``longestSleep``.
        case long
    }

    /// Whether queuing a command must wake the thread through its wake-up pipe.
    ///
    /// - Parameters:
    ///   - sleep: how the thread sleeps.
    ///   - wakePending: somebody already woke it during this sleep (one wake-up per sleep is enough).
    ///   - lazyQueued: the lazy commands (plain acks) queued since the thread last took its commands, this one
    ///     included when it is lazy.
    ///   - lazyLimit: for a plain ack, its channel's ``lazyAckLimit(prefetch:)``; `nil` for every other command.
    /// - Returns: `true` for any command to a sleeping thread not yet woken, except a lazy one to a briefly sleeping
    ///   thread while fewer than `lazyLimit` wait. Once that many wait, the consumer that acked them may have used up its
    ///   prefetch window, and the broker sends nothing more until they arrive: a thread left to nap would stall it.
    static func wakes(sleep: Sleep, wakePending: Bool, lazyQueued: Int, lazyLimit: Int?) -> Bool {
        guard sleep != .awake, !wakePending else { return false }
        if let lazyLimit, sleep == .brief, lazyQueued < lazyLimit { return false }
        return true
    }

    // MARK: Consumers' prefetch windows

    /// What the thread's channels' consumers have outstanding, folded over every channel that has a consumer.
    struct Windows: Equatable {
        /// Some delivery that needs an ack is not yet settled on the wire.
        private(set) var anyUnsettled = false
        /// Some window is at least half used by deliveries unsettled on the wire.
        private(set) var anyHalfFull = false
        /// Some window is used up: the broker sends that consumer nothing more until acks arrive.
        private(set) var anyFull = false

        init() {}

        /// Adds one channel: `unsettled` deliveries that the broker counts as unacknowledged (acks this thread holds
        /// included), under a prefetch of `prefetch` (0: none, a window that never fills).
        mutating func add(prefetch: UInt16, unsettled: UInt64) {
            guard unsettled > 0 else { return }
            anyUnsettled = true
            guard prefetch > 0 else { return }
            if 2 * unsettled >= UInt64(prefetch) { anyHalfFull = true }
            if unsettled >= UInt64(prefetch) { anyFull = true }
        }
    }

    // MARK: State

    /// The sleep of an idle thread: a quarter of the heartbeat interval (at least 250 ms: heartbeats are whole
    /// seconds) when that is shorter than ``longestSleep``.
    let idleSleep: Duration
    /// When the last delivery that needs an ack was read.
    private var lastAcknowledgedDeliveryAt: ContinuousClock.Instant
    /// Deliveries read since the thread last slept.
    private(set) var deliveriesSinceSleep = 0
    /// The last sleep ended with nothing to read and nothing queued: no delivery is coming to join a held run.
    private(set) var lastSleepWasQuiet = false
    private var lastConfirmCheck: ContinuousClock.Instant
    /// The consumers' windows when the thread last decided to sleep: a sleeping thread changes none of them.
    private var windowsAtSleep = Windows()

    /// - Parameters:
    ///   - heartbeatSeconds: the negotiated heartbeat interval; 0 for none.
    ///   - now: the thread's start.
    init(heartbeatSeconds: Int, now: ContinuousClock.Instant) {
        idleSleep = heartbeatSeconds > 0 ? min(Self.longestSleep, .seconds(heartbeatSeconds) / 4) : Self.longestSleep
        lastAcknowledgedDeliveryAt = now - Self.busyWindow
        lastConfirmCheck = now
    }

    // MARK: Events

    /// A delivery to a consumer was read. `needsAck` is false for a `noAck` consumer; `now` is read only when it is
    /// true.
    mutating func deliveryRead(needsAck: Bool, now: @autoclosure () -> ContinuousClock.Instant) {
        deliveriesSinceSleep += 1
        if needsAck { lastAcknowledgedDeliveryAt = now() }
    }

    /// What to do with a channel's held acks at the start of a pass.
    enum AckFlush: Equatable {
        case hold
        /// Send the contiguous run (one `multiple` ack); acks behind a gap stay held.
        case contiguousRun
        /// Send everything held: the run, and every ack behind a gap on its own.
        case everything
    }

    /// What to do with `held` acks of a channel, the oldest made at `heldSince`.
    ///
    /// - Parameter closing: the channel or connection is closing: everything goes.
    /// - Returns: ``AckFlush/everything`` when closing, when ``heldAcksLimit`` are held or the oldest is
    ///   ``ackDelay`` old; ``AckFlush/contiguousRun`` when a batch waits, the oldest is ``ackBatchDelay`` old, or the
    ///   last sleep was quiet (nothing arrived, so no delivery is coming to join the run); otherwise
    ///   ``AckFlush/hold``.
    func ackFlush(
        held: Int, heldSince: ContinuousClock.Instant?, prefetch: UInt16, closing: Bool, now: ContinuousClock.Instant
    ) -> AckFlush {
        let age = heldSince.map { now - $0 } ?? .zero
        if closing || held >= Self.heldAcksLimit || age >= Self.ackDelay { return .everything }
        if lastSleepWasQuiet || held >= Self.ackBatch(prefetch: prefetch) || age >= Self.ackBatchDelay {
            return .contiguousRun
        }
        return .hold
    }

    /// Whether to look for overdue confirms now (at most every ``confirmCheckInterval``).
    mutating func confirmCheckIsDue(now: ContinuousClock.Instant) -> Bool {
        guard now - lastConfirmCheck >= Self.confirmCheckInterval else { return false }
        lastConfirmCheck = now
        return true
    }

    /// What the thread does after a pass.
    enum AfterPass: Equatable {
        /// Take the commands and read the socket again at once.
        case passAgain
        /// Sleep (unless commands arrived meanwhile) until the socket is readable, the thread is woken, or
        /// `timeout` passes.
        case sleep(Sleep, timeout: Duration)
    }

    /// A pass ended: it ran the commands it took (`tookCommands`), flushed acks and read frames, reading everything the
    /// socket held when `drainedSocket`.
    ///
    /// - Parameters:
    ///   - holdsAcks: some channel still holds acks.
    ///   - windows: the consumers' windows now; evaluated only when the pass ends in a sleep.
    /// - Returns: ``AfterPass/passAgain`` while there is more to do. Otherwise a sleep: brief while acks are held, or
    ///   while deliveries are unsettled on a busy connection (their acks come soon, without a wake-up); long otherwise
    ///   (a slow handler's ack wakes the thread). A pass that drained the socket is not followed by one that finds it
    ///   empty: `poll` returns at once if more came meanwhile.
    mutating func passEnded(
        tookCommands: Bool, drainedSocket: Bool, holdsAcks: Bool, windows: @autoclosure () -> Windows,
        now: ContinuousClock.Instant
    ) -> AfterPass {
        lastSleepWasQuiet = false
        guard !tookCommands && drainedSocket else { return .passAgain }
        windowsAtSleep = windows()
        let busy = now - lastAcknowledgedDeliveryAt < Self.busyWindow
        if holdsAcks || (busy && windowsAtSleep.anyUnsettled) {
            return .sleep(.brief, timeout: min(idleSleep, Self.briefSleep))
        }
        return .sleep(.long, timeout: idleSleep)
    }

    /// What the thread does after a sleep.
    struct AfterSleep: Equatable {
        /// Wait this long before reading, to let a busy stream of deliveries gather; `nil`: read at once.
        var gather: Duration?
        /// The sleep ended with nothing read while a consumer's window was used up: time the broker spent waiting
        /// for this client's acks (counted in ``IOStatistics/stalls``).
        var stalled: Bool
    }

    /// A sleep that ``passEnded(tookCommands:drainedSocket:holdsAcks:windows:now:)`` decided ended: with the socket
    /// readable (`socketReadable`), or with nothing at all ready (`nothingReady`: the timeout passed). Judged by the
    /// consumers' windows as they were when the thread went to sleep.
    mutating func sleepEnded(socketReadable: Bool, nothingReady: Bool) -> AfterSleep {
        defer { deliveriesSinceSleep = 0 }
        lastSleepWasQuiet = nothingReady
        let gathers =
            socketReadable && deliveriesSinceSleep >= Self.gatherAfterDeliveries && !windowsAtSleep.anyHalfFull
        return AfterSleep(gather: gathers ? Self.gatherDelay : nil, stalled: nothingReady && windowsAtSleep.anyFull)
    }
}

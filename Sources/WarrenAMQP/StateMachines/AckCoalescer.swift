/// Turns a channel's individual acks into as few `basic.ack` frames as possible without changing what is settled.
///
/// Invariant: every delivery tag below `nextUnsettled` is settled on the wire. Acks the application made are held in
/// `pendingAcks`; tags settled on the wire individually (nacks, rejects, acks sent alone) above `nextUnsettled` are in
/// `settledOnWire`. When a contiguous run starting at `nextUnsettled` contains pending acks, one `ack(last, multiple:
/// true)` settles it, where `last` is the run's last *pending* tag: RabbitMQ skips already-settled tags below the
/// one named, but refuses (406, unknown delivery tag) a named tag that is no longer outstanding. Pending acks stuck
/// behind a gap (an earlier delivery still being handled) are sent one by one once they are old or many enough.
///
/// Pure value type: the I/O thread feeds it events and sends the frames it returns.
struct AckCoalescer {
    enum Frame: Equatable {
        case ack(UInt64, multiple: Bool)
    }

    private(set) var nextUnsettled: UInt64 = 1
    private var pendingAcks: Set<UInt64> = []
    private var settledOnWire: Set<UInt64> = []
    /// When the oldest pending ack was made, for the time bound.
    private(set) var oldestPendingSince: ContinuousClock.Instant?

    var pendingCount: Int { pendingAcks.count }

    init() {}

    /// The application acked `tag`: hold it.
    mutating func ack(_ tag: UInt64, now: ContinuousClock.Instant) {
        guard tag >= nextUnsettled else { return }
        if pendingAcks.isEmpty { oldestPendingSince = now }
        pendingAcks.insert(tag)
    }

    /// Something other than a held ack settled these tags on the wire (a nack, a reject, an explicit multiple ack).
    /// Call it before sending that frame: the returned frames (pending acks it would otherwise swallow or overtake)
    /// must go first.
    mutating func settledElsewhere(_ tag: UInt64, multiple: Bool) -> [Frame] {
        var frames: [Frame] = []
        if multiple {
            // A multiple settlement covers every pending ack up to `tag` too: drop them, nothing to send.
            pendingAcks = pendingAcks.filter { $0 > tag }
            settledOnWire = settledOnWire.filter { $0 > tag }
            nextUnsettled = max(nextUnsettled, tag + 1)
        } else if tag >= nextUnsettled {
            settledOnWire.insert(tag)
        }
        frames += advance()
        if pendingAcks.isEmpty { oldestPendingSince = nil }
        return frames
    }

    /// The frames to send now: the contiguous run from `nextUnsettled` as one multiple ack; and, when `force` (the
    /// time or count bound was reached, or the channel is closing), every other pending ack on its own.
    mutating func flush(force: Bool) -> [Frame] {
        var frames = advance()
        if force && !pendingAcks.isEmpty {
            for tag in pendingAcks.sorted() {
                frames.append(.ack(tag, multiple: false))
                settledOnWire.insert(tag)
            }
            pendingAcks.removeAll()
            _ = advance()
        }
        if pendingAcks.isEmpty { oldestPendingSince = nil }
        return frames
    }

    /// Moves `nextUnsettled` over the contiguous settled run and returns the multiple ack that covers it, when the run
    /// holds at least one pending ack.
    private mutating func advance() -> [Frame] {
        var end = nextUnsettled
        var lastPending: UInt64?
        while true {
            if pendingAcks.remove(end) != nil {
                lastPending = end
            } else if settledOnWire.remove(end) == nil {
                break
            }
            end += 1
        }
        nextUnsettled = end
        return lastPending.map { [.ack($0, multiple: true)] } ?? []
    }
}

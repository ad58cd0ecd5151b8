import Synchronization

/// What the connections' I/O threads of this process did, summed over all of them since the process started: for
/// benchmarks, which read it before and after a phase and compare. Each counter is one relaxed atomic increment on the
/// I/O thread, per read pass or per frame sent, not per byte.
package enum IOStatistics {
    package struct Snapshot: Sendable, Equatable {
        /// `basic.ack` frames sent (a `multiple` ack is one frame).
        package var ackFrames = 0
        /// Times a consumer's task, waiting for deliveries, was woken.
        package var consumerWakeups = 0
        /// Sleeps of an I/O thread in `poll`.
        package var naps = 0
        /// Sleeps that ended with nothing to read or do: the broker sent nothing for that long.
        package var quietNaps = 0
        /// Quiet naps while some consumer had as many unsettled deliveries as its prefetch allows: the broker was
        /// waiting for this client's acks, so each one is time lost by the client, not by the broker.
        package var quietNapsWithWindowFull = 0

        package static func - (later: Snapshot, earlier: Snapshot) -> Snapshot {
            Snapshot(
                ackFrames: later.ackFrames - earlier.ackFrames,
                consumerWakeups: later.consumerWakeups - earlier.consumerWakeups,
                naps: later.naps - earlier.naps,
                quietNaps: later.quietNaps - earlier.quietNaps,
                quietNapsWithWindowFull: later.quietNapsWithWindowFull - earlier.quietNapsWithWindowFull)
        }
    }

    static let ackFrames = Atomic<Int>(0)
    static let consumerWakeups = Atomic<Int>(0)
    static let naps = Atomic<Int>(0)
    static let quietNaps = Atomic<Int>(0)
    static let quietNapsWithWindowFull = Atomic<Int>(0)

    package static var snapshot: Snapshot {
        Snapshot(
            ackFrames: ackFrames.load(ordering: .relaxed),
            consumerWakeups: consumerWakeups.load(ordering: .relaxed),
            naps: naps.load(ordering: .relaxed),
            quietNaps: quietNaps.load(ordering: .relaxed),
            quietNapsWithWindowFull: quietNapsWithWindowFull.load(ordering: .relaxed))
    }

    static func count(_ counter: borrowing Atomic<Int>, _ amount: Int = 1) {
        counter.wrappingAdd(amount, ordering: .relaxed)
    }
}

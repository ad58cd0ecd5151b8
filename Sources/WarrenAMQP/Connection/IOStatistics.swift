import Synchronization

/// What the connections' I/O threads of this process did, summed over all of them since the process started: for
/// benchmarks, which read it before and after a phase and compare. Each count is one relaxed atomic increment on the
/// I/O thread, per frame sent, per sleep or per wake-up, not per delivery.
package enum IOStatistics {
    package struct Snapshot: Sendable, Equatable {
        /// `basic.ack` frames sent (a `multiple` ack is one frame).
        package var ackFrames = 0
        /// Sleeps of an I/O thread that ended with nothing read while some consumer had as many unsettled deliveries
        /// as its prefetch allows: the broker was waiting for this client's acks, time lost by the client.
        package var stalls = 0
        /// Consumer tasks resumed by an I/O thread because deliveries arrived while they waited (one per burst, not
        /// per delivery).
        package var consumerWakeups = 0

        package static func - (later: Snapshot, earlier: Snapshot) -> Snapshot {
            Snapshot(
                ackFrames: later.ackFrames - earlier.ackFrames, stalls: later.stalls - earlier.stalls,
                consumerWakeups: later.consumerWakeups - earlier.consumerWakeups)
        }
    }

    static let ackFrames = Atomic<Int>(0)
    static let stalls = Atomic<Int>(0)
    static let consumerWakeups = Atomic<Int>(0)

    package static var snapshot: Snapshot {
        Snapshot(
            ackFrames: ackFrames.load(ordering: .relaxed), stalls: stalls.load(ordering: .relaxed),
            consumerWakeups: consumerWakeups.load(ordering: .relaxed))
    }

    static func count(_ counter: borrowing Atomic<Int>) {
        counter.wrappingAdd(1, ordering: .relaxed)
    }
}

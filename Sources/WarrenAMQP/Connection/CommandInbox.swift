/// The commands queued for a connection's I/O thread, and whether the thread must be woken to take them. Lives
/// behind the connection's mutex: tasks queue, the thread takes.
struct CommandInbox {
    private(set) var commands: [IOCommand] = []
    /// How the thread sleeps; set by the thread before it sleeps and cleared when it wakes.
    var sleep: IOLoopStateMachine.Sleep = .awake
    /// A wake-up was sent during this sleep.
    var wakePending = false
    /// Lazy commands queued since the thread last took the commands.
    private(set) var lazyCommands = 0
    var accepting = true

    /// Queues `command`; returns whether the caller must wake the thread (see
    /// ``IOLoopStateMachine/wakes(sleep:wakePending:lazyQueued:lazyLimit:)``).
    /// - Parameter lazyLimit: for a plain ack, its channel's ``ChannelHandle/lazyAckLimit``; `nil` otherwise.
    mutating func enqueue(_ command: IOCommand, lazyLimit: Int?) -> Bool {
        commands.append(command)
        if lazyLimit != nil { lazyCommands += 1 }
        let wake = IOLoopStateMachine.wakes(
            sleep: sleep, wakePending: wakePending, lazyQueued: lazyCommands, lazyLimit: lazyLimit)
        if wake { wakePending = true }
        return wake
    }

    /// What the thread is to execute now, in the order it was queued.
    mutating func take() -> [IOCommand] {
        defer {
            commands.removeAll(keepingCapacity: true)
            lazyCommands = 0
        }
        return commands
    }

    /// The thread goes to sleep, unless commands wait; returns whether it may.
    mutating func fallAsleep(_ sleep: IOLoopStateMachine.Sleep) -> Bool {
        guard commands.isEmpty else { return false }
        self.sleep = sleep
        return true
    }

    /// The thread woke up.
    mutating func wake() {
        sleep = .awake
        wakePending = false
    }
}

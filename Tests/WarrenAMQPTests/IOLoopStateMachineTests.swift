import Testing

@testable import WarrenAMQP

/// The I/O thread's pacing rules, fed events as the thread would feed them.
@Suite("The connection thread's pacing")
struct IOLoopStateMachineTests {
    typealias Machine = IOLoopStateMachine
    let start = ContinuousClock.now

    func machine(heartbeatSeconds: Int = 0) -> Machine {
        Machine(heartbeatSeconds: heartbeatSeconds, now: start)
    }

    func windows(_ channels: (prefetch: UInt16, unsettled: UInt64)...) -> Machine.Windows {
        var windows = Machine.Windows()
        for channel in channels { windows.add(prefetch: channel.prefetch, unsettled: channel.unsettled) }
        return windows
    }

    /// A pass with nothing left to do, so that the machine decides how to sleep.
    func quietPass(
        _ machine: inout Machine, holdsAcks: Bool = false, windows: Machine.Windows = .init(),
        at now: ContinuousClock.Instant
    )
        -> Machine.AfterPass
    {
        machine.passEnded(tookCommands: false, drainedSocket: true, holdsAcks: holdsAcks, windows: windows, now: now)
    }

    // MARK: Sleeping

    @Test func aPassThatRanCommandsOrLeftFramesUnreadIsFollowedByAnotherAtOnce() {
        var machine = machine()
        let afterCommands = machine.passEnded(
            tookCommands: true, drainedSocket: true, holdsAcks: false, windows: .init(), now: start)
        #expect(afterCommands == .passAgain)
        let afterAPartialRead = machine.passEnded(
            tookCommands: false, drainedSocket: false, holdsAcks: false, windows: .init(), now: start)
        #expect(afterAPartialRead == .passAgain)
    }

    @Test func anIdleThreadSleepsLongAndWithHeartbeatsAtMostAQuarterOfTheirInterval() {
        #expect(machine().idleSleep == .seconds(1))
        #expect(machine(heartbeatSeconds: 60).idleSleep == .seconds(1))
        #expect(machine(heartbeatSeconds: 2).idleSleep == .milliseconds(500))
        #expect(machine(heartbeatSeconds: 1).idleSleep == .milliseconds(250))
        var idle = machine(heartbeatSeconds: 2)
        let sleep = quietPass(&idle, at: start)
        #expect(sleep == .sleep(.long, timeout: .milliseconds(500)))
    }

    @Test func heldAcksKeepTheSleepBrief() {
        var machine = machine()
        let sleep = quietPass(&machine, holdsAcks: true, at: start + .seconds(10))
        #expect(sleep == .sleep(.brief, timeout: Machine.briefSleep))
    }

    @Test func unsettledDeliveriesKeepTheSleepBriefOnlyWhileTheConnectionIsBusy() {
        var machine = machine()
        let unsettled = windows((prefetch: 200, unsettled: 3))
        machine.deliveryRead(needsAck: true, now: start)
        let whileBusy = quietPass(&machine, windows: unsettled, at: start + .milliseconds(19))
        #expect(whileBusy == .sleep(.brief, timeout: Machine.briefSleep))
        // A slow handler: its ack wakes the thread when it comes.
        let afterTheBusyWindow = quietPass(&machine, windows: unsettled, at: start + Machine.busyWindow)
        #expect(afterTheBusyWindow == .sleep(.long, timeout: .seconds(1)))
        // Busy, but everything read is settled: nothing will come without a wake-up.
        machine.deliveryRead(needsAck: true, now: start + .seconds(1))
        let nothingUnsettled = quietPass(&machine, at: start + .seconds(1))
        #expect(nothingUnsettled == .sleep(.long, timeout: .seconds(1)))
    }

    @Test func deliveriesThatNeedNoAckDoNotMakeTheConnectionBusy() {
        var machine = machine()
        machine.deliveryRead(needsAck: false, now: start)
        let sleep = quietPass(&machine, windows: windows((prefetch: 0, unsettled: 1)), at: start)
        #expect(sleep == .sleep(.long, timeout: .seconds(1)))
    }

    // MARK: Waking

    @Test func aCommandWakesASleepingThreadOncePerSleep() {
        #expect(
            !Machine.wakes(sleep: .awake, wakePending: false, lazyQueued: 0, lazyLimit: nil),
            "an awake thread takes it on its next pass")
        #expect(Machine.wakes(sleep: .long, wakePending: false, lazyQueued: 0, lazyLimit: nil))
        #expect(
            Machine.wakes(sleep: .brief, wakePending: false, lazyQueued: 0, lazyLimit: nil),
            "a nack or a publish does not wait")
        #expect(!Machine.wakes(sleep: .long, wakePending: true, lazyQueued: 0, lazyLimit: nil))
    }

    @Test func plainAcksLetABriefSleepRunUntilABatchWaits() {
        #expect(!Machine.wakes(sleep: .brief, wakePending: false, lazyQueued: 49, lazyLimit: 50))
        // The 50th may leave the consumer's prefetch window used up: the broker sends nothing until these acks arrive.
        #expect(Machine.wakes(sleep: .brief, wakePending: false, lazyQueued: 50, lazyLimit: 50))
        #expect(
            Machine.wakes(sleep: .long, wakePending: false, lazyQueued: 1, lazyLimit: 50),
            "a long sleeper is not coming back soon by itself")
    }

    @Test func aBatchIsAQuarterOfThePrefetchAndANarrowWindowAcksEagerly() {
        #expect(Machine.ackBatch(prefetch: 200) == 50)
        #expect(Machine.ackBatch(prefetch: 1000) == Machine.largestAckBatch)
        #expect(Machine.ackBatch(prefetch: 0) == Machine.largestAckBatch)
        #expect(Machine.ackBatch(prefetch: 2) == 1)
        #expect(Machine.lazyAckLimit(prefetch: 8) == 2)
        #expect(Machine.lazyAckLimit(prefetch: 7) == nil, "with a narrow window every ack wakes the thread")
        #expect(Machine.lazyAckLimit(prefetch: 1) == nil)
        #expect(Machine.lazyAckLimit(prefetch: 0) == Machine.largestAckBatch)
    }

    @Test func theInboxWakesASleeperOnceAndCountsLazyAcksUntilTheyAreTaken() {
        let channel = ChannelHandle(id: 1)
        func ack(_ tag: Int) -> IOCommand { .settle(channel: channel, .ack(deliveryTag: UInt64(tag), multiple: false)) }
        var inbox = CommandInbox()
        let wokeAnAwakeThread = inbox.enqueue(ack(1), lazyLimit: 50)
        #expect(!wokeAnAwakeThread)
        let sleepsWithCommandsWaiting = inbox.fallAsleep(.brief)
        #expect(sleepsWithCommandsWaiting == false, "commands wait: no sleep")
        #expect(inbox.take().count == 1)
        let sleeps = inbox.fallAsleep(.brief)
        #expect(sleeps)
        let firstWakers = (1...60).filter { inbox.enqueue(ack($0), lazyLimit: 50) }
        #expect(firstWakers == [50])
        inbox.wake()
        #expect(inbox.take().count == 60)
        #expect(inbox.lazyCommands == 0)
        let sleepsAgain = inbox.fallAsleep(.brief)
        #expect(sleepsAgain)
        let wakers = (61...110).filter { inbox.enqueue(ack($0), lazyLimit: 50) }
        #expect(wakers == [110], "taking the commands starts the count again")
    }

    // MARK: Prefetch windows

    @Test func windowsAreHalfFullAndFullByDeliveriesUnsettledOnTheWire() {
        #expect(
            windows((prefetch: 5, unsettled: 2)) == windows((prefetch: 0, unsettled: 1)),
            "some unsettled, none half full")
        #expect(windows((prefetch: 5, unsettled: 2)).anyUnsettled)
        #expect(!windows((prefetch: 5, unsettled: 2)).anyHalfFull)
        #expect(windows((prefetch: 5, unsettled: 3)).anyHalfFull)
        #expect(!windows((prefetch: 5, unsettled: 4)).anyFull)
        #expect(windows((prefetch: 5, unsettled: 5)).anyFull)
        #expect(!windows((prefetch: 0, unsettled: 100_000)).anyHalfFull, "without a prefetch a window never fills")
        #expect(!windows((prefetch: 5, unsettled: 0)).anyUnsettled)
        #expect(windows((prefetch: 200, unsettled: 1), (prefetch: 4, unsettled: 4)).anyFull, "any channel counts")
    }

    @Test func heldAcksStillCountAsUnsettledOnTheWire() {
        let channel = ChannelBookkeeping(handle: ChannelHandle(id: 1))
        channel.lastDeliveryTag = 4
        #expect(channel.unsettledOnWire == 4)
        for tag in 1...2 { channel.acks.ack(UInt64(tag), now: .now) }
        #expect(channel.unsettledOnWire == 4, "the broker still counts acks this thread holds")
        _ = channel.acks.flush(force: false)
        #expect(channel.unsettledOnWire == 2)
        for tag in 3...4 { channel.acks.ack(UInt64(tag), now: .now) }
        _ = channel.acks.flush(force: false)
        #expect(channel.unsettledOnWire == 0)
    }

    // MARK: Gathering deliveries

    /// Sleeps with `windows`, after `deliveries` were read, and wakes with the socket readable.
    func wakeReadable(after deliveries: Int, windows: Machine.Windows = .init()) -> Machine.AfterSleep {
        var machine = machine()
        for _ in 0..<deliveries { machine.deliveryRead(needsAck: true, now: start) }
        _ = quietPass(&machine, windows: windows, at: start)
        return machine.sleepEnded(socketReadable: true, nothingReady: false)
    }

    @Test func aLoneDeliveryIsReadAtOnce() {
        #expect(wakeReadable(after: 0).gather == nil)
        #expect(wakeReadable(after: 1).gather == nil)
    }

    @Test func aStreamIsGatheredUnlessTheBrokerMaySoonWaitForAcks() {
        #expect(wakeReadable(after: 2).gather == Machine.gatherDelay)
        #expect(wakeReadable(after: 40, windows: windows((prefetch: 200, unsettled: 99))).gather == Machine.gatherDelay)
        #expect(wakeReadable(after: 40, windows: windows((prefetch: 200, unsettled: 100))).gather == nil)
    }

    @Test func onlyAReadableSocketIsGatheredAndTheCountStartsAgainAfterEachSleep() {
        var machine = machine()
        for _ in 0..<5 { machine.deliveryRead(needsAck: true, now: start) }
        _ = quietPass(&machine, at: start)
        let gatherAfterACommand = machine.sleepEnded(socketReadable: false, nothingReady: false).gather
        #expect(gatherAfterACommand == nil, "woken by a command")
        #expect(machine.deliveriesSinceSleep == 0)
        machine.deliveryRead(needsAck: true, now: start)
        _ = quietPass(&machine, at: start)
        let gatherAfterOneDelivery = machine.sleepEnded(socketReadable: true, nothingReady: false).gather
        #expect(gatherAfterOneDelivery == nil)
    }

    // MARK: Sending held acks

    func flush(_ machine: Machine, held: Int, age: Duration, prefetch: UInt16 = 200, closing: Bool = false)
        -> Machine.AckFlush
    {
        machine.ackFlush(held: held, heldSince: start, prefetch: prefetch, closing: closing, now: start + age)
    }

    @Test func aContiguousRunWaitsForABatchOrItsTimeBound() {
        let machine = machine()
        #expect(flush(machine, held: 49, age: .microseconds(999)) == .hold)
        #expect(flush(machine, held: 50, age: .zero) == .contiguousRun)
        #expect(flush(machine, held: 1, age: Machine.ackBatchDelay) == .contiguousRun)
        #expect(
            flush(machine, held: 1, age: .zero, prefetch: 4) == .contiguousRun, "a batch of a prefetch of 4 is one ack")
    }

    @Test func everythingGoesWhenOldManyOrClosing() {
        let machine = machine()
        #expect(flush(machine, held: 1, age: .microseconds(4999), prefetch: 0) == .contiguousRun)
        #expect(flush(machine, held: 1, age: Machine.ackDelay) == .everything)
        #expect(flush(machine, held: Machine.heldAcksLimit, age: .zero, prefetch: 0) == .everything)
        #expect(flush(machine, held: 1, age: .zero, closing: true) == .everything)
    }

    @Test func afterAQuietSleepHeldRunsGoOutForTheRestOfThatPass() {
        var machine = machine()
        _ = quietPass(&machine, holdsAcks: true, at: start)
        _ = machine.sleepEnded(socketReadable: false, nothingReady: true)
        #expect(flush(machine, held: 1, age: .zero) == .contiguousRun, "no delivery is coming to join the run")
        _ = machine.passEnded(tookCommands: true, drainedSocket: true, holdsAcks: true, windows: .init(), now: start)
        #expect(flush(machine, held: 1, age: .zero) == .hold, "the next pass holds again")
    }

    @Test func aQuietSleepWithAUsedUpWindowIsAStall() {
        var machine = machine()
        _ = quietPass(&machine, windows: windows((prefetch: 4, unsettled: 4)), at: start)
        let usedUpWindow = machine.sleepEnded(socketReadable: false, nothingReady: true)
        #expect(usedUpWindow.stalled)
        _ = quietPass(&machine, windows: windows((prefetch: 4, unsettled: 4)), at: start)
        let wokenByACommand = machine.sleepEnded(socketReadable: false, nothingReady: false)
        #expect(!wokenByACommand.stalled, "woken by a command: no time lost")
        _ = quietPass(&machine, windows: windows((prefetch: 4, unsettled: 3)), at: start)
        let windowNotUsedUp = machine.sleepEnded(socketReadable: false, nothingReady: true)
        #expect(!windowNotUsedUp.stalled)
    }

    // MARK: Confirms

    @Test func overdueConfirmsAreLookedForAtMostEveryInterval() {
        var machine = machine()
        let before = machine.confirmCheckIsDue(now: start + .milliseconds(99))
        #expect(!before)
        let atTheInterval = machine.confirmCheckIsDue(now: start + .milliseconds(100))
        #expect(atTheInterval)
        let halfAnIntervalLater = machine.confirmCheckIsDue(now: start + .milliseconds(150))
        #expect(!halfAnIntervalLater)
        let anIntervalLater = machine.confirmCheckIsDue(now: start + .milliseconds(200))
        #expect(anIntervalLater)
    }
}

import Synchronization

/// Elections and schedule state of an ``InMemoryTransport``: one process plays every instance, so a term is held
/// until it resigns or a test ends it (``InMemoryTransport/endLeadership(of:)``).
final class InMemoryElections: Sendable {
    private struct State {
        /// The term holding each election.
        var holders: [String: Int] = [:]
        var nextTerm = 1
        var schedules: [String: ScheduleState] = [:]
        /// Requests for a run now, per schedule, oldest first.
        var triggers: [String: [ScheduleTrigger.Body]] = [:]
        var directories: [String: ScheduleDirectory] = [:]
    }

    private let state = AwaitableState(State())

    func campaign(
        _ election: String, publish: @escaping @Sendable (OutboundMessage) async throws -> Void
    ) throws -> (any LeadershipTerm)? {
        try LeadershipNames.check(election, as: "an election's name")
        let id: Int? = state.update { state in
            guard state.holders[election] == nil else { return nil }
            defer { state.nextTerm += 1 }
            state.holders[election] = state.nextTerm
            return state.nextTerm
        }
        return id.map { Term(election: election, id: $0, elections: self, deliver: publish) }
    }

    func end(_ election: String, term: Int? = nil) {
        state.update { state in
            if term == nil || state.holders[election] == term { state.holders[election] = nil }
        }
    }

    func holds(_ election: String, term: Int) -> Bool {
        state.update { $0.holders[election] == term }
    }

    func setPaused(_ paused: Bool, schedule: String) {
        state.update { $0.schedules[schedule, default: ScheduleState(lastTick: nil, paused: false)].paused = paused }
    }

    func trigger(_ name: String, requestID: String, requestedBy: String?) {
        state.update { $0.triggers[name, default: []].append(.init(requestID: requestID, requestedBy: requestedBy)) }
    }

    /// A request whose run could not be published, first in line again (as a broker requeues it).
    fileprivate func putBack(_ request: ScheduleTrigger.Body, schedule name: String) {
        state.update { $0.triggers[name, default: []].insert(request, at: 0) }
    }

    func directory(in queue: String) -> ScheduleDirectory? {
        state.update { $0.directories[queue] }
    }

    fileprivate func publish(_ directory: ScheduleDirectory, to queue: String) {
        state.update { $0.directories[queue] = directory }
    }

    /// The oldest request for schedule `name`, once there is one, while term `id` of `election` holds; `nil` when it
    /// ends first.
    fileprivate func nextTrigger(_ name: String, election: String, term: Int) async throws -> ScheduleTrigger.Body? {
        try await state.wait(until: { $0.holders[election] != term || !($0.triggers[name] ?? []).isEmpty })
        return state.update { state in
            guard state.holders[election] == term, var waiting = state.triggers[name], !waiting.isEmpty else {
                return nil
            }
            defer { state.triggers[name] = waiting }
            return waiting.removeFirst()
        }
    }

    func scheduleState(_ name: String) -> ScheduleState {
        state.update { $0.schedules[name] ?? ScheduleState(lastTick: nil, paused: false) }
    }

    fileprivate func record(tick: Int64, schedule: String) {
        state.update { $0.schedules[schedule, default: ScheduleState(lastTick: nil, paused: false)].lastTick = tick }
    }

    fileprivate func waitUntilEnded(_ election: String, term: Int) async {
        try? await state.wait(until: { $0.holders[election] != term })
    }

    private struct Term: LeadershipTerm {
        let election: String
        let id: Int
        let elections: InMemoryElections
        let deliver: @Sendable (OutboundMessage) async throws -> Void

        var isHeld: Bool { elections.holds(election, term: id) }

        func waitUntilEnded() async { await elections.waitUntilEnded(election, term: id) }

        func publish(_ message: OutboundMessage) async throws {
            guard isHeld else { throw WarrenError.leadershipEnded(election) }
            try await deliver(message)
        }

        func resign() async { elections.end(election, term: id) }

        func prepareSchedule(_ name: String) async throws {
            try LeadershipNames.check(name, as: "a schedule's name")
        }

        func scheduleState(_ name: String) async throws -> ScheduleState { elections.scheduleState(name) }

        func isPaused(_ name: String) async throws -> Bool { elections.scheduleState(name).paused }

        func triggers(_ name: String) async throws -> ScheduleTriggers {
            ScheduleTriggers { [elections, election, id] in
                try await elections.nextTrigger(name, election: election, term: id).map { request in
                    ScheduleTrigger(
                        requestID: request.requestID, requestedBy: request.requestedBy, done: {},
                        giveBack: { elections.putBack(request, schedule: name) })
                }
            }
        }

        func publishDirectory(_ directory: ScheduleDirectory, to queue: String) async throws {
            guard isHeld else { throw WarrenError.leadershipEnded(election) }
            elections.publish(directory, to: queue)
        }

        func publishTick(_ message: OutboundMessage?, schedule name: String, scheduledFor: Int64) async throws {
            if let message { try await publish(message) }
            guard isHeld else { throw WarrenError.leadershipEnded(election) }
            elections.record(tick: scheduledFor, schedule: name)
        }
    }
}

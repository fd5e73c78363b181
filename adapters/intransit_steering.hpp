// intransit_steering.hpp -- the simulation's end of the intransit steering stream (C++17, header only).
//
// Mirrors intransit.adapters.steering.SteeringClient (Python).  The analytics write one ADIOS2
// step per analyzed simulation step on IO "Steering" (engine SST, DataTransport WAN):
//
//   seq           int64    sequence number 1, 2, 3, ... (applied at most once, in order)
//   answers_step  int64    the simulation step this record answers
//   command       string   continue | stop | checkpoint | set | trigger
//   rule          string   the rule that fired ("" for continue)
//   args          string   JSON arguments (not parsed here: set_name/set_value carry them typed)
//   set_name      string   for set: the parameter
//   set_value     double   for set: the value (NaN otherwise)
//
// Usage (once per simulation step, after EndStep):
//
//   adios2::ADIOS adios(xmlPath);
//   intransit::SteeringClient steer(adios, "/scratch/run42/steering", 50 /* ms */);
//   steer.onStop([&](const intransit::Command &c) { stopRequested = true; });
//   steer.onCheckpoint([&](const intransit::Command &c) { writeCheckpoint(); });
//   steer.declareDouble("dt", 1e-4, 0.5, [&](double v) { dt = v; });
//   for (step ...) { ...; engine.EndStep(); steer.poll(step); if (stopRequested) break; }
//
// Guarantees (the same as the Python client):
//  * poll() never waits for the analytics: it opens the stream only when <stream>.sst exists
//    (a contact file whose mtime/size already failed once is not retried), with
//    OpenTimeoutSecs = max(1, ceil(timeoutMs / 1000)), then drains the records that have
//    arrived with BeginStep(Read, 0) until NotReady.  EndOfStream: steering is over, the
//    simulation goes on (the stream is not reopened).
//  * Only what the simulation declared is applied: an unknown/unregistered command, a set of
//    an undeclared parameter, a non-finite, non-integral (int64) or out-of-range value, a
//    malformed record (seq, answers_step or command missing; set without set_name/set_value)
//    is rejected and logged to stderr, never applied.
//  * Each sequence number is consumed once: a record whose seq <= the last one seen is counted
//    as replayed and ignored.  A well-formed record consumes its seq even when rejected.
//  * ADIOS2 errors on the steering stream are logged and end steering; they are never thrown
//    out of poll().
//
// If the ADIOS2 XML of the simulation defines an IO named "Steering" (or the name given), its
// engine and parameters are used; otherwise SST with DataTransport=WAN.
#pragma once

#include <adios2.h>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace intransit
{

/// One record of the reverse stream, as the simulation sees it.
struct Command
{
    int64_t seq = 0;
    int64_t answers_step = -1;
    std::string command;
    std::string rule;
    std::string args;      // the JSON text, unparsed
    std::string set_name;  // for "set"
    double set_value = std::numeric_limits<double>::quiet_NaN();
};

struct SteeringStats
{
    uint64_t received = 0;  // records read (every one, malformed included)
    uint64_t applied = 0;   // records whose callback ran
    uint64_t rejected = 0;  // malformed, unknown, undeclared, bad value
    uint64_t replayed = 0;  // seq <= last seq seen: ignored
    bool connected = false; // the stream was opened at least once
    bool ended = false;     // end of stream (or a stream error): steering is over
    int64_t last_seq = 0;
    int64_t last_answered_step = -1;
};

enum class ParamType
{
    Double,
    Int64
};

class SteeringClient
{
public:
    using CommandCallback = std::function<void(const Command &)>;
    /// For ParamType::Int64 the value is integral (checked) and passed as a double.
    using SetCallback = std::function<void(const std::string &name, double value)>;

    static constexpr const char *DefaultIO = "Steering";

    /// Use the simulation's ADIOS object (it must outlive this client).
    SteeringClient(adios2::ADIOS &adios, std::string stream, int timeoutMs = 50,
                   const std::string &ioName = DefaultIO)
    : m_Stream(std::move(stream)), m_TimeoutMs(timeoutMs < 0 ? 0 : timeoutMs)
    {
        Setup(adios, ioName);
    }

    /// Own a private ADIOS object (no XML: SST, DataTransport=WAN).
    explicit SteeringClient(std::string stream, int timeoutMs = 50,
                            const std::string &ioName = DefaultIO)
    : m_Own(std::make_unique<adios2::ADIOS>()), m_Stream(std::move(stream)),
      m_TimeoutMs(timeoutMs < 0 ? 0 : timeoutMs)
    {
        Setup(*m_Own, ioName);
    }

    SteeringClient(const SteeringClient &) = delete;
    SteeringClient &operator=(const SteeringClient &) = delete;

    ~SteeringClient() { close(); }

    // -- what the simulation accepts ---------------------------------------------------
    /// Accept `command` (stop, checkpoint, trigger; continue is accepted by default) and run
    /// `callback` on it.  Throws std::invalid_argument for "set" (use declareParameter) and
    /// for names outside the protocol.
    void on(const std::string &command, CommandCallback callback)
    {
        if (command == "set" || !IsProtocolCommand(command))
        {
            throw std::invalid_argument("intransit::SteeringClient::on: cannot register '" + command +
                                        "': use declareParameter for 'set'; commands: continue, "
                                        "stop, checkpoint, trigger");
        }
        m_Callbacks[command] = std::move(callback);
    }
    void onStop(CommandCallback cb) { on("stop", std::move(cb)); }
    void onCheckpoint(CommandCallback cb) { on("checkpoint", std::move(cb)); }
    void onTrigger(CommandCallback cb) { on("trigger", std::move(cb)); }

    /// Accept `set` for `name` with values of `type` within [low, high] (inclusive).
    void declareParameter(const std::string &name, ParamType type, double low, double high,
                          SetCallback onSet)
    {
        if (name.empty())
        {
            throw std::invalid_argument("intransit::SteeringClient::declareParameter: empty name");
        }
        if (std::isnan(low) || std::isnan(high) || low > high)
        {
            std::ostringstream msg;
            msg << "intransit::SteeringClient::declareParameter: parameter '" << name << "': low "
                << low << " > high " << high;
            throw std::invalid_argument(msg.str());
        }
        m_Params[name] = Param{type, low, high, std::move(onSet)};
    }
    void declareDouble(const std::string &name, double low, double high,
                       std::function<void(double)> onSet)
    {
        declareParameter(name, ParamType::Double, low, high,
                         [f = std::move(onSet)](const std::string &, double v) { f(v); });
    }
    void declareInt64(const std::string &name, int64_t low, int64_t high,
                      std::function<void(int64_t)> onSet)
    {
        declareParameter(name, ParamType::Int64, static_cast<double>(low),
                         static_cast<double>(high),
                         [f = std::move(onSet)](const std::string &, double v) {
                             f(static_cast<int64_t>(v));
                         });
    }

    // -- the per-step call ----------------------------------------------------------------
    /// Apply what has arrived; returns the commands applied during this call.  With waitMs > 0,
    /// wait at most that long (or the client's timeout, whichever is larger) for a record that
    /// answers `step`; with waitMs == 0 (the default) it never waits for the analytics.
    std::vector<Command> poll(int64_t step, int waitMs = 0)
    {
        using clock = std::chrono::steady_clock;
        const auto deadline =
            clock::now() + std::chrono::milliseconds(std::max(m_TimeoutMs, std::max(waitMs, 0)));
        std::vector<Command> applied;
        if (!m_Engine && !m_Stats.ended)
        {
            TryOpen();
        }
        while (m_Engine)
        {
            adios2::StepStatus status;
            try
            {
                status = m_Engine.BeginStep(adios2::StepMode::Read, 0.0f);
            }
            catch (const std::exception &e)
            {
                Log("steering stream '" + m_Stream + "' failed (" + FirstLine(e.what()) +
                    "); the simulation goes on without steering");
                CloseEngine();
                m_Stats.ended = true;
                break;
            }
            if (status == adios2::StepStatus::OK)
            {
                Record rec;
                try
                {
                    rec = ReadRecord();
                    m_Engine.EndStep();
                }
                catch (const std::exception &e)
                {
                    Log("steering: reading a record failed (" + FirstLine(e.what()) +
                        "); the simulation goes on without steering");
                    CloseEngine();
                    m_Stats.ended = true;
                    break;
                }
                if (auto cmd = Apply(rec))
                {
                    applied.push_back(*cmd);
                }
                continue;
            }
            if (status == adios2::StepStatus::EndOfStream)
            {
                Log("steering stream '" + m_Stream +
                    "' ended (analytics finished or gone); the simulation goes on");
                CloseEngine();
                m_Stats.ended = true;
                break;
            }
            if (status == adios2::StepStatus::OtherError)
            {
                Log("steering stream '" + m_Stream +
                    "': BeginStep error; the simulation goes on without steering");
                CloseEngine();
                m_Stats.ended = true;
                break;
            }
            // NotReady: nothing more has arrived yet
            if (waitMs > 0 && m_Stats.last_answered_step < step && clock::now() < deadline)
            {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                continue;
            }
            break;
        }
        if (waitMs > 0 && !m_Engine && !m_Stats.ended && clock::now() < deadline)
        {
            // Not connected yet: keep looking for the analytics until the bound.
            while (!m_Engine && clock::now() < deadline)
            {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                TryOpen();
            }
            if (m_Engine)
            {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - clock::now())
                                      .count();
                if (left > 0)
                {
                    auto more = poll(step, static_cast<int>(left));
                    applied.insert(applied.end(), more.begin(), more.end());
                }
            }
        }
        return applied;
    }

    void close() { CloseEngine(); }

    const SteeringStats &stats() const noexcept { return m_Stats; }
    bool connected() const noexcept { return static_cast<bool>(m_Engine); }
    bool ended() const noexcept { return m_Stats.ended; }
    const std::string &stream() const noexcept { return m_Stream; }
    /// (command, outcome) for every well-formed record: "applied", "rejected: ...",
    /// "ignored: replayed sequence number".
    const std::vector<std::pair<Command, std::string>> &history() const noexcept
    {
        return m_History;
    }

    /// Where log lines go (default: std::cerr, prefixed "intransit steering: ").
    void setLogger(std::function<void(const std::string &)> logger) { m_Logger = std::move(logger); }

private:
    struct Param
    {
        ParamType type;
        double low;
        double high;
        SetCallback onSet;
    };

    struct Record
    {
        std::optional<int64_t> seq, answers_step;
        std::optional<double> set_value;
        std::optional<std::string> command, rule, args, set_name;
    };

    std::unique_ptr<adios2::ADIOS> m_Own;
    std::string m_Stream;
    int m_TimeoutMs;
    adios2::IO m_IO;
    adios2::Engine m_Engine;
    bool m_IsSst = true;
    bool m_HaveFailedContact = false;
    std::pair<int64_t, int64_t> m_FailedContact{0, 0}; // (mtime ns, size)
    std::map<std::string, CommandCallback> m_Callbacks{{"continue", [](const Command &) {}}};
    std::map<std::string, Param> m_Params;
    SteeringStats m_Stats;
    std::vector<std::pair<Command, std::string>> m_History;
    std::function<void(const std::string &)> m_Logger;

    static bool IsProtocolCommand(const std::string &c)
    {
        return c == "continue" || c == "stop" || c == "checkpoint" || c == "set" || c == "trigger";
    }

    static std::string FirstLine(const std::string &s)
    {
        const auto b = s.find_first_not_of(" \n\r\t");
        if (b == std::string::npos)
        {
            return "error";
        }
        const auto e = s.find('\n', b);
        return s.substr(b, e == std::string::npos ? std::string::npos : e - b);
    }

    void Log(const std::string &msg) const
    {
        if (m_Logger)
        {
            m_Logger(msg);
        }
        else
        {
            std::cerr << "intransit steering: " << msg << std::endl;
        }
    }

    void Setup(adios2::ADIOS &adios, const std::string &ioName)
    {
        m_IO = adios.DeclareIO(ioName);
        if (!m_IO.InConfigFile())
        {
            m_IO.SetEngine("SST");
            m_IO.SetParameter("DataTransport", "WAN");
        }
        std::string engine = m_IO.EngineType();
        for (auto &ch : engine)
        {
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        m_IsSst = engine == "sst";
        const int openSecs = std::max(1, (m_TimeoutMs + 999) / 1000);
        m_IO.SetParameter("OpenTimeoutSecs", std::to_string(openSecs));
    }

    void TryOpen()
    {
        std::pair<int64_t, int64_t> key{0, 0};
        if (m_IsSst)
        {
            struct stat st;
            if (::stat((m_Stream + ".sst").c_str(), &st) != 0)
            {
                return; // the analytics have not started (or have finished): go on
            }
            key = {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec,
                   static_cast<int64_t>(st.st_size)};
            if (m_HaveFailedContact && key == m_FailedContact)
            {
                return; // the same stale contact file that failed before
            }
        }
        try
        {
            m_Engine = m_IO.Open(m_Stream, adios2::Mode::Read);
            m_Stats.connected = true;
            Log("connected to '" + m_Stream + "'");
        }
        catch (const std::exception &e)
        {
            m_Engine = adios2::Engine();
            if (m_IsSst)
            {
                m_HaveFailedContact = true;
                m_FailedContact = key;
            }
            else
            {
                m_Stats.ended = true; // a file that cannot be opened will not improve
            }
            Log("could not attach to '" + m_Stream + "' (" + FirstLine(e.what()) +
                "); the simulation goes on without steering");
        }
    }

    void CloseEngine()
    {
        if (m_Engine)
        {
            try
            {
                m_Engine.Close();
            }
            catch (const std::exception &)
            {
            }
            m_Engine = adios2::Engine();
        }
    }

    /// Read every protocol variable present this step; missing (or mistyped) ones stay empty.
    Record ReadRecord()
    {
        Record r;
        const auto available = m_IO.AvailableVariables(true);
        auto has = [&](const char *n) { return available.count(n) != 0; };
        auto getInt = [&](const char *n) -> std::optional<int64_t> {
            if (!has(n))
                return std::nullopt;
            auto v = m_IO.InquireVariable<int64_t>(n);
            if (!v)
                return std::nullopt;
            int64_t x = 0;
            m_Engine.Get(v, &x, adios2::Mode::Sync);
            return x;
        };
        auto getStr = [&](const char *n) -> std::optional<std::string> {
            if (!has(n))
                return std::nullopt;
            auto v = m_IO.InquireVariable<std::string>(n);
            if (!v)
                return std::nullopt;
            std::string s;
            m_Engine.Get(v, s, adios2::Mode::Sync);
            return s;
        };
        r.seq = getInt("seq");
        r.answers_step = getInt("answers_step");
        if (has("set_value"))
        {
            if (auto v = m_IO.InquireVariable<double>("set_value"))
            {
                double x = 0;
                m_Engine.Get(v, &x, adios2::Mode::Sync);
                r.set_value = x;
            }
        }
        r.command = getStr("command");
        r.rule = getStr("rule");
        r.args = getStr("args");
        r.set_name = getStr("set_name");
        return r;
    }

    static std::string Describe(const Record &r)
    {
        std::ostringstream s;
        s << "{";
        const char *sep = "";
        auto field = [&](const char *n, const auto &opt) {
            if (opt)
            {
                s << sep << n << "=" << *opt;
                sep = ", ";
            }
        };
        field("seq", r.seq);
        field("answers_step", r.answers_step);
        if (r.command)
        {
            s << sep << "command='" << *r.command << "'";
            sep = ", ";
        }
        if (r.rule)
        {
            s << sep << "rule='" << *r.rule << "'";
            sep = ", ";
        }
        if (r.set_name && !r.set_name->empty())
        {
            s << sep << "set_name='" << *r.set_name << "'";
            sep = ", ";
        }
        if (r.set_value && !std::isnan(*r.set_value))
        {
            s << sep << "set_value=" << *r.set_value;
        }
        s << "}";
        return s.str();
    }

    void Reject(const Record &r, const std::string &reason, const Command *cmd)
    {
        ++m_Stats.rejected;
        Log("rejected " + Describe(r) + ": " + reason);
        if (cmd)
        {
            m_History.emplace_back(*cmd, "rejected: " + reason);
        }
    }

    std::optional<Command> Apply(const Record &r)
    {
        ++m_Stats.received;
        std::string missing;
        if (!r.seq)
            missing += " seq";
        if (!r.answers_step)
            missing += " answers_step";
        if (!r.command)
            missing += " command";
        if (!missing.empty())
        {
            Reject(r, "malformed record, missing" + missing, nullptr);
            return std::nullopt;
        }
        Command cmd;
        cmd.seq = *r.seq;
        cmd.answers_step = *r.answers_step;
        cmd.command = *r.command;
        cmd.rule = r.rule.value_or("");
        cmd.args = r.args.value_or("{}");
        cmd.set_name = r.set_name.value_or("");
        cmd.set_value = r.set_value.value_or(std::numeric_limits<double>::quiet_NaN());

        if (cmd.seq <= m_Stats.last_seq)
        {
            ++m_Stats.replayed;
            Log("ignored replayed sequence number " + std::to_string(cmd.seq) + " (last applied " +
                std::to_string(m_Stats.last_seq) + ")");
            m_History.emplace_back(cmd, "ignored: replayed sequence number");
            return std::nullopt;
        }
        // Whatever happens next, this sequence number is consumed: never applied twice.
        m_Stats.last_seq = cmd.seq;
        m_Stats.last_answered_step = std::max(m_Stats.last_answered_step, cmd.answers_step);

        if (cmd.command == "set")
        {
            return ApplySet(cmd, r);
        }
        auto it = m_Callbacks.find(cmd.command);
        if (it == m_Callbacks.end())
        {
            std::string accepted;
            for (const auto &kv : m_Callbacks)
                accepted += (accepted.empty() ? "" : ", ") + kv.first;
            if (!m_Params.empty())
                accepted += ", set";
            Reject(r,
                   "command '" + cmd.command + "' is not accepted by this simulation; it accepts [" +
                       accepted + "]",
                   &cmd);
            return std::nullopt;
        }
        it->second(cmd);
        if (cmd.command != "continue")
        {
            Log("applied " + cmd.command + " (seq " + std::to_string(cmd.seq) + ", answers step " +
                std::to_string(cmd.answers_step) + ", rule '" + cmd.rule + "')");
        }
        ++m_Stats.applied;
        m_History.emplace_back(cmd, "applied");
        return cmd;
    }

    std::optional<Command> ApplySet(const Command &cmd, const Record &r)
    {
        if (!r.set_name || !r.set_value)
        {
            Reject(r, "malformed set: set_name and set_value are required", &cmd);
            return std::nullopt;
        }
        auto it = m_Params.find(cmd.set_name);
        if (it == m_Params.end())
        {
            std::string declared;
            for (const auto &kv : m_Params)
                declared += (declared.empty() ? "" : ", ") + kv.first;
            Reject(r, "set of undeclared parameter '" + cmd.set_name + "'; declared: [" + declared +
                          "]",
                   &cmd);
            return std::nullopt;
        }
        const Param &p = it->second;
        const double v = cmd.set_value;
        std::ostringstream val;
        val.precision(17);
        val << v;
        if (!std::isfinite(v))
        {
            Reject(r, "set " + cmd.set_name + ": value " + val.str() + " is not a finite number",
                   &cmd);
            return std::nullopt;
        }
        if (p.type == ParamType::Int64 &&
            (v != std::floor(v) || std::fabs(v) > 9007199254740992.0 /* 2^53 */))
        {
            Reject(r, "set " + cmd.set_name + ": value " + val.str() + " is not an int64", &cmd);
            return std::nullopt;
        }
        if (v < p.low || v > p.high)
        {
            std::ostringstream range;
            range.precision(17);
            range << "[" << p.low << ", " << p.high << "]";
            Reject(r, "set " + cmd.set_name + ": value " + val.str() + " outside " + range.str(),
                   &cmd);
            return std::nullopt;
        }
        p.onSet(cmd.set_name, v);
        Log("set " + cmd.set_name + " = " + val.str() + " (seq " + std::to_string(cmd.seq) +
            ", answers step " + std::to_string(cmd.answers_step) + ", rule '" + cmd.rule + "')");
        ++m_Stats.applied;
        m_History.emplace_back(cmd, "applied");
        return cmd;
    }
};

} // namespace intransit

// intransit_steering.hpp -- the simulation's end of the intransit steering stream (C++17, header only).
//
// Mirrors intransit.adapters.steering.SteeringClient (Python).  The analytics write one ADIOS2
// step per analyzed simulation step on IO "Steering" -- by default a BP5 file read as a stream
// (the simulation's open and polls never wait on the analytics), SST through an XML:
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
//  * poll() never waits for the analytics: it opens the stream only when the writer's file
//    exists (BP5: <stream>/md.idx; SST: the contact file <stream>.sst, and a contact file
//    whose mtime/size already failed once is not retried), with OpenTimeoutSecs =
//    max(1, ceil(timeoutMs / 1000)), then drains the records that have arrived with
//    BeginStep(Read, 0) until NotReady, or until timeoutMs has passed (the rest waits for the
//    next poll).  EndOfStream: this stream is over, the simulation goes on; a new stream at the
//    same path (a restarted analytics job) is attached to, and a stream replaced under a
//    connected client (its md.idx deleted -- Linux /proc/self/fd --, of another inode, or
//    shrunk; checked every 500 ms) is reattached.
//  * The Open itself runs on a helper thread: an SST writer answers a reader's
//    registration only inside its own API calls (Open/BeginStep/EndStep/Put), so a reader's
//    Open blocks until the analytics next write a record -- forever if they stall, or if a
//    stale contact file names an address that never answers.  poll() only looks whether that
//    Open has finished; the reader has a private adios2::ADIOS object (the simulation's one is
//    never touched from the helper thread).  An Open still pending at close() is abandoned
//    after the timeout (its thread closes the engine if the Open ever returns).
//  * Only what the simulation declared is applied: an unknown/unregistered command, a set of
//    an undeclared parameter, a non-finite, non-integral (int64) or out-of-range value, a
//    malformed record (seq, answers_step or command missing; set without set_name/set_value;
//    a protocol variable of another type or shape, a string over 64 KiB, a variable that
//    cannot be read) is rejected and logged to stderr, never applied.
//  * A record answering a step the simulation has not reached yet (answers_step > the step
//    given to poll) is rejected: a stale steering stream left by another run must not steer
//    this one.
//  * Each sequence number is consumed once: a record whose seq <= the last one seen is counted
//    as replayed and ignored.  A well-formed record consumes its seq even when rejected.
//  * ADIOS2 errors on the steering stream are logged and end steering; they are never thrown
//    out of poll().
//
// If the ADIOS2 XML of the simulation defines an IO named "Steering" (or the name given), or the
// simulation declared that IO itself before constructing the client, its engine and parameters
// are used (SST gets DataTransport=WAN unless set); otherwise BP5, like the Python client.
#pragma once

#include <adios2.h>

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace intransit
{

/// Write ``<stream>.end.json``: how many steps this simulation published on ``stream`` (call it after the
/// last EndStep, before Close).  A keep-pace (Discard) SST writer drops steps the analytics cannot take;
/// those after the last one they received are invisible to them, and with this report they count them
/// exactly (the same file as Python's intransit.adapters.steering.report_end_of_stream).  Returns false
/// (and writes nothing) when the file cannot be written; never throws.
inline bool report_end_of_stream(const std::string &stream, int64_t steps_written)
{
    if (steps_written < 0)
        return false;
    const std::string path = stream + ".end.json";
    const std::string tmp = path + ".tmp";
    std::string base = stream;
    const auto slash = base.find_last_of('/');
    if (slash != std::string::npos)
        base = base.substr(slash + 1);
    std::string escaped;
    for (char c : base)
    {
        if (c == '"' || c == '\\')
            escaped += '\\';
        if (static_cast<unsigned char>(c) >= 0x20)
            escaped += c;
    }
    FILE *fh = std::fopen(tmp.c_str(), "w");
    if (!fh)
        return false;
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const int n = std::fprintf(fh, "{\"format\": \"intransit-end-of-stream/1\", \"stream\": \"%s\", "
                                   "\"steps_written\": %lld, \"time\": %.3f}",
                               escaped.c_str(), static_cast<long long>(steps_written), now);
    const bool ok = n > 0 && std::fclose(fh) == 0;
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    {
        std::remove(tmp.c_str());
        return false;
    }
    return true;
}

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

    /// Take the steering IO's engine and parameters from the simulation's ADIOS object (its XML
    /// or an IO the simulation declared); the reader itself uses a private ADIOS object.
    SteeringClient(adios2::ADIOS &adios, std::string stream, int timeoutMs = 50,
                   const std::string &ioName = DefaultIO)
    : m_Stream(std::move(stream)), m_TimeoutMs(timeoutMs < 0 ? 0 : timeoutMs)
    {
        std::string engine;
        adios2::Params params;
        adios2::IO io;
        try
        {
            io = adios.AtIO(ioName); // declared by the simulation
        }
        catch (const std::exception &)
        {
            io = adios.DeclareIO(ioName); // from its XML, or a fresh one (removed below)
            if (!io.InConfigFile())
            {
                adios.RemoveIO(ioName);
                io = adios2::IO();
            }
        }
        if (io)
        {
            engine = io.EngineType();
            params = io.Parameters();
        }
        Setup(ioName, engine, params);
    }

    /// Own everything: BP5, or the IO `ioName` of `xmlPath` when given (e.g. SST).
    explicit SteeringClient(std::string stream, int timeoutMs = 50,
                            const std::string &ioName = DefaultIO, const std::string &xmlPath = "")
    : m_Stream(std::move(stream)), m_TimeoutMs(timeoutMs < 0 ? 0 : timeoutMs)
    {
        std::string engine;
        adios2::Params params;
        if (!xmlPath.empty())
        {
            adios2::ADIOS cfg(xmlPath);
            adios2::IO io = cfg.DeclareIO(ioName);
            if (io.InConfigFile())
            {
                engine = io.EngineType();
                params = io.Parameters();
            }
        }
        Setup(ioName, engine, params);
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
        m_CurrentStep = std::max(m_CurrentStep, step);
        std::vector<Command> applied;
        if (!m_Engine)
        {
            TryOpen(); // first attach, or a new stream after one ended (a restarted job)
        }
        else if (clock::now() >= m_NextReplacedCheck)
        {
            m_NextReplacedCheck = clock::now() + std::chrono::milliseconds(ReplacedCheckMs);
            if (Replaced())
            {
                Log("the reverse stream '" + m_Stream + "' was replaced (the analytics restarted); reattaching");
                CloseEngine();
                TryOpen();
            }
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
                EndStream();
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
                    EndStream();
                    break;
                }
                if (auto cmd = Apply(rec))
                {
                    applied.push_back(*cmd);
                }
                if (waitMs <= 0 && clock::now() > deadline)
                {
                    break; // the rest waits for the next poll: the bound holds
                }
                continue;
            }
            if (status == adios2::StepStatus::EndOfStream)
            {
                Log("steering stream '" + m_Stream +
                    "' ended (analytics finished or gone); the simulation goes on");
                EndStream();
                break;
            }
            if (status == adios2::StepStatus::OtherError)
            {
                Log("steering stream '" + m_Stream +
                    "': BeginStep error; the simulation goes on without steering");
                EndStream();
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
            while (!m_Engine && !m_Stats.ended && clock::now() < deadline)
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

    /// Close the stream.  An Open still pending on the helper thread gets up to the timeout to
    /// finish; after that it is abandoned (never blocks longer).
    void close()
    {
        CloseEngine();
        if (m_Opening)
        {
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::milliseconds(m_TimeoutMs);
            for (;;)
            {
                {
                    std::lock_guard<std::mutex> lock(m_Opening->mu);
                    if (m_Opening->done)
                    {
                        if (m_Opening->engine)
                        {
                            try
                            {
                                m_Opening->engine.Close();
                            }
                            catch (const std::exception &)
                            {
                            }
                        }
                        break;
                    }
                    if (std::chrono::steady_clock::now() >= deadline)
                    {
                        m_Opening->abandoned = true; // the thread closes it if it ever opens
                        Log("abandoned a pending Open of '" + m_Stream +
                            "' (the analytics never answered)");
                        break;
                    }
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
            m_Opening.reset();
        }
    }

    const SteeringStats &stats() const noexcept { return m_Stats; }
    /// An Open is pending on the helper thread (contact file found, analytics not answered yet).
    bool opening() const noexcept { return static_cast<bool>(m_Opening); }
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
        /// Non-empty: a protocol variable had the wrong type or shape, was too long, or could not be
        /// read; the record is rejected with this reason and never applied.
        std::string malformed;
    };

    /// Longest string accepted in a record (as the Python client).
    static constexpr size_t MaxString = 65536;

    /// An Open running on the helper thread; shared with it.
    struct OpenState
    {
        std::mutex mu;
        bool done = false;
        bool abandoned = false;
        adios2::Engine engine;
        std::string error;
    };

    std::string m_Stream;
    int m_TimeoutMs;
    std::shared_ptr<adios2::ADIOS> m_Adios; // private: used by the helper thread and by poll()
    adios2::IO m_IO;
    adios2::Engine m_Engine;
    std::shared_ptr<OpenState> m_Opening;
    std::pair<int64_t, int64_t> m_OpeningContact{0, 0};
    bool m_IsSst = false;
    int64_t m_CurrentStep = -1;
    bool m_HaveFailedContact = false;
    /// The writer's file we read ({dev, inode, mtime for SST}) and its size when last looked at;
    /// the identity of a stream that ended: after an end the client attaches only to a new one
    /// (a restarted analytics job re-creates the stream).
    std::array<int64_t, 3> m_Identity{{-1, -1, -1}};
    int64_t m_IdentitySize = 0;
    std::array<int64_t, 4> m_EndedKey{{-1, -1, -1, -1}}; // {dev, inode, mtime ns, size} at the end
    std::chrono::steady_clock::time_point m_NextReplacedCheck{};
    /// How often a connected client checks whether its stream was replaced.
    static constexpr int ReplacedCheckMs = 500;
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

    static std::string FirstLine(const std::string &text)
    {
        std::string s; // without ANSI colour sequences (ADIOS2 colours its exceptions)
        for (std::size_t i = 0; i < text.size(); ++i)
        {
            if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[')
            {
                i += 2;
                while (i < text.size() && !std::isalpha(static_cast<unsigned char>(text[i])))
                    ++i;
                continue;
            }
            s += text[i];
        }
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

    void Setup(const std::string &ioName, const std::string &engineType, const adios2::Params &params)
    {
        m_Adios = std::make_shared<adios2::ADIOS>();
        m_IO = m_Adios->DeclareIO(ioName);
        m_IO.SetEngine(engineType.empty() ? std::string("BP5") : engineType);
        m_IO.SetParameters(params);
        std::string engine = m_IO.EngineType();
        for (auto &ch : engine)
        {
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        m_IsSst = engine == "sst";
        if (m_IsSst && params.count("DataTransport") == 0)
        {
            m_IO.SetParameter("DataTransport", "WAN");
        }
        const int openSecs = std::max(1, (m_TimeoutMs + 999) / 1000);
        m_IO.SetParameter("OpenTimeoutSecs", std::to_string(openSecs));
    }

    std::string Contact() const { return m_IsSst ? m_Stream + ".sst" : m_Stream + "/md.idx"; }

    /// {dev, inode, mtime (SST only)} and size of the writer's file; dev -1 when it is not there.
    std::pair<std::array<int64_t, 3>, int64_t> StatIdentity() const
    {
        struct stat st;
        if (::stat(Contact().c_str(), &st) != 0)
            return {{{-1, -1, -1}}, 0};
        const int64_t mtime =
            m_IsSst ? static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec : 0;
        return {{{static_cast<int64_t>(st.st_dev), static_cast<int64_t>(st.st_ino), mtime}},
                static_cast<int64_t>(st.st_size)};
    }

    /// Whether the stream we read was removed and written anew (a restarted analytics job).
    bool Replaced()
    {
        const auto [identity, size] = StatIdentity();
        if (identity[0] < 0)
            return false; // gone (finished, or restarting): keep reading what we have
        // A new file may get the old one's inode number back: for BP5 our own open md.idx being
        // deleted says the file at the path is another one.
        const bool replaced = identity != m_Identity || (!m_IsSst && size < m_IdentitySize) ||
                              (!m_IsSst && OpenFileDeleted(m_Stream + "/md.idx"));
        m_IdentitySize = size;
        return replaced;
    }

    /// The writer's file as it is now, in full ({dev, inode, mtime ns, size}; dev -1 when absent): an
    /// ended stream's file no longer changes, and a new file may reuse the old one's inode number.
    std::array<int64_t, 4> EndKey() const
    {
        struct stat st;
        if (::stat(Contact().c_str(), &st) != 0)
            return {{-1, -1, -1, -1}};
        return {{static_cast<int64_t>(st.st_dev), static_cast<int64_t>(st.st_ino),
                 static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec,
                 static_cast<int64_t>(st.st_size)}};
    }

    /// Whether this process holds ``path`` open and that file was deleted (Linux /proc; false elsewhere).
    static bool OpenFileDeleted(const std::string &path)
    {
        char resolved[PATH_MAX];
        if (!::realpath(path.substr(0, path.find_last_of('/')).c_str(), resolved))
            return false; // the folder is gone too: nothing new to attach to yet
        const std::string target = std::string(resolved) + path.substr(path.find_last_of('/')) + " (deleted)";
        DIR *dir = ::opendir("/proc/self/fd");
        if (!dir)
            return false;
        bool found = false;
        char link[PATH_MAX + 16];
        while (dirent *e = ::readdir(dir))
        {
            const std::string fd = std::string("/proc/self/fd/") + e->d_name;
            const ssize_t n = ::readlink(fd.c_str(), link, sizeof(link) - 1);
            if (n > 0 && std::string(link, static_cast<size_t>(n)) == target)
            {
                found = true;
                break;
            }
        }
        ::closedir(dir);
        return found;
    }

    void EndStream()
    {
        m_EndedKey = EndKey();
        CloseEngine();
        m_Stats.ended = true;
    }

    void TryOpen()
    {
        if (m_Opening)
        {
            CheckOpening();
            return;
        }
        // Open only once the writer's file exists, so opening never waits for it.
        const std::string contact = m_IsSst ? m_Stream + ".sst" : m_Stream + "/md.idx";
        struct stat st;
        if (::stat(contact.c_str(), &st) != 0)
        {
            return; // the analytics have not started (or have finished): go on
        }
        const std::pair<int64_t, int64_t> key{
            static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec,
            static_cast<int64_t>(st.st_size)};
        if (m_IsSst && m_HaveFailedContact && key == m_FailedContact)
        {
            return; // the same stale contact file that failed before
        }
        if (m_EndedKey[0] >= 0 && EndKey() == m_EndedKey)
        {
            return; // the stream that already ended: wait for a new one
        }
        auto state = std::make_shared<OpenState>();
        m_Opening = state;
        m_OpeningContact = key;
        try
        {
            std::thread([state, adios = m_Adios, io = m_IO, name = m_Stream]() mutable {
                adios2::Engine engine;
                std::string error;
                try
                {
                    engine = io.Open(name, adios2::Mode::Read);
                }
                catch (const std::exception &e)
                {
                    error = e.what();
                }
                std::lock_guard<std::mutex> lock(state->mu);
                state->done = true;
                if (state->abandoned && engine)
                {
                    try
                    {
                        engine.Close();
                    }
                    catch (const std::exception &)
                    {
                    }
                    return;
                }
                state->engine = engine;
                state->error = error.empty() && !engine ? std::string("Open failed") : error;
                (void)adios; // keeps the ADIOS object alive as long as this thread runs
            }).detach();
        }
        catch (const std::exception &e)
        {
            m_Opening.reset();
            Log(std::string("cannot start the Open thread (") + e.what() + ")");
            m_Stats.ended = true;
            return;
        }
        // An Open that finishes at once (stale contact file, connection refused) is seen now.
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::min(m_TimeoutMs, 20));
        while (m_Opening && std::chrono::steady_clock::now() < until)
        {
            if (CheckOpening())
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    /// Take over the result of the helper thread's Open if it has finished; true if it has.
    bool CheckOpening()
    {
        adios2::Engine engine;
        std::string error;
        {
            std::lock_guard<std::mutex> lock(m_Opening->mu);
            if (!m_Opening->done)
            {
                return false;
            }
            engine = m_Opening->engine;
            error = m_Opening->error;
        }
        m_Opening.reset();
        if (engine)
        {
            m_Engine = engine;
            std::tie(m_Identity, m_IdentitySize) = StatIdentity();
            m_NextReplacedCheck = std::chrono::steady_clock::now() + std::chrono::milliseconds(ReplacedCheckMs);
            m_Stats.connected = true;
            Log("connected to '" + m_Stream + "'");
            return true;
        }
        m_HaveFailedContact = true;
        m_FailedContact = m_OpeningContact;
        Log("could not attach to '" + m_Stream + "' (" + FirstLine(error) +
            "); the simulation goes on without steering");
        return true;
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

    /// Read every protocol variable present this step; missing ones stay empty.
    ///
    /// Whatever bytes the reverse stream carries: each variable's type and shape are checked in
    /// the step's variable list before it is read (ADIOS2 would read a 4-element seq into a
    /// 1-element buffer, or not find a mistyped one), strings are bounded, and a read that throws
    /// marks the record malformed instead of ending steering.
    Record ReadRecord()
    {
        Record r;
        std::map<std::string, adios2::Params> available;
        try
        {
            available = m_IO.AvailableVariables();
        }
        catch (const std::exception &e)
        {
            r.malformed = std::string("unreadable variable list (") + FirstLine(e.what()) + ")";
            return r;
        }
        auto problem = [&](const std::string &text) {
            r.malformed += (r.malformed.empty() ? "" : "; ") + text;
        };
        // Present with the protocol's type and a single value; else the reason is noted.
        auto usable = [&](const char *n, const char *want) -> bool {
            auto it = available.find(n);
            if (it == available.end())
                return false;
            auto field = [&](const char *key) {
                auto f = it->second.find(key);
                return f == it->second.end() ? std::string() : f->second;
            };
            const std::string type = field("Type");
            std::string shape = field("Shape");
            shape.erase(std::remove_if(shape.begin(), shape.end(), ::isspace), shape.end());
            if (type != want)
            {
                problem(std::string(n) + " is " + (type.empty() ? "untyped" : type) + ", expected " + want);
                return false;
            }
            if (!shape.empty() && shape != "1")
            {
                problem(std::string(n) + " has shape {" + shape + "}, expected a single value");
                return false;
            }
            return true;
        };
        auto guarded = [&](const char *n, auto &&read) {
            try
            {
                read();
            }
            catch (const std::exception &e)
            {
                problem(std::string(n) + " unreadable (" + FirstLine(e.what()).substr(0, 120) + ")");
            }
        };
        auto getInt = [&](const char *n, std::optional<int64_t> &out) {
            if (!usable(n, "int64_t"))
                return;
            guarded(n, [&] {
                auto v = m_IO.InquireVariable<int64_t>(n);
                if (!v)
                    throw std::runtime_error("not found");
                int64_t x = 0;
                m_Engine.Get(v, &x, adios2::Mode::Sync);
                out = x;
            });
        };
        auto getStr = [&](const char *n, std::optional<std::string> &out) {
            if (!usable(n, "string"))
                return;
            guarded(n, [&] {
                auto v = m_IO.InquireVariable<std::string>(n);
                if (!v)
                    throw std::runtime_error("not found");
                std::string x;
                m_Engine.Get(v, x, adios2::Mode::Sync);
                if (x.size() > MaxString)
                {
                    problem(std::string(n) + " is " + std::to_string(x.size()) +
                            " characters long (at most " + std::to_string(MaxString) + ")");
                    return;
                }
                out = std::move(x);
            });
        };
        getInt("seq", r.seq);
        getInt("answers_step", r.answers_step);
        if (usable("set_value", "double"))
        {
            guarded("set_value", [&] {
                auto v = m_IO.InquireVariable<double>("set_value");
                if (!v)
                    throw std::runtime_error("not found");
                double x = 0;
                m_Engine.Get(v, &x, adios2::Mode::Sync);
                r.set_value = x;
            });
        }
        getStr("command", r.command);
        getStr("rule", r.rule);
        getStr("args", r.args);
        getStr("set_name", r.set_name);
        return r;
    }

    /// A top-level member of the args object: its JSON kind and, for strings, the unescaped text,
    /// for numbers the literal.
    struct JsonMember
    {
        char kind = 0; // 's' string, 'n' number, 'b' true/false, 'z' null, 'o' object, 'a' array
        std::string text;
    };

    /// Parse ``text`` as one JSON object (what the analytics send as args) and return its
    /// top-level members; an empty optional and ``error`` set when it is not one.  JSON with
    /// nesting at most 64 deep (iteration, not recursion); NaN/Infinity are read as numbers and
    /// refused by the value checks (not finite), so both clients refuse the same records.
    static std::optional<std::map<std::string, JsonMember>> ParseArgs(const std::string &text,
                                                                     std::string &error)
    {
        size_t i = 0;
        const size_t n = text.size();
        auto ws = [&] {
            while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
                ++i;
        };
        auto fail = [&](const std::string &what) {
            error = what + " at character " + std::to_string(i);
            return std::nullopt;
        };
        auto str = [&](std::string &out) -> bool { // at '"'
            ++i;
            while (i < n)
            {
                char c = text[i++];
                if (c == '"')
                    return true;
                if (static_cast<unsigned char>(c) < 0x20)
                    return false;
                if (c == '\\')
                {
                    if (i >= n)
                        return false;
                    char e = text[i++];
                    if (e == 'u')
                    {
                        if (i + 4 > n)
                            return false;
                        for (int k = 0; k < 4; ++k)
                            if (!std::isxdigit(static_cast<unsigned char>(text[i + k])))
                                return false;
                        out += '?'; // names and values we compare are ASCII
                        i += 4;
                        continue;
                    }
                    const std::string esc = "\"\\/bfnrt", rep = "\"\\/\b\f\n\r\t";
                    auto at = esc.find(e);
                    if (at == std::string::npos)
                        return false;
                    out += rep[at];
                    continue;
                }
                out += c;
            }
            return false;
        };
        auto number = [&](std::string &out) -> bool {
            const size_t b = i;
            if (i < n && text[i] == '-')
                ++i;
            // Python's json.dumps writes NaN, Infinity, -Infinity (not JSON): read as numbers here,
            // refused by the value checks as not finite, as the Python client refuses them.
            for (const char *word : {"NaN", "Infinity"})
            {
                const size_t len = std::char_traits<char>::length(word);
                if (text.compare(i, len, word) == 0)
                {
                    i += len;
                    out = text.substr(b, i - b);
                    return true;
                }
            }
            if (i >= n || !std::isdigit(static_cast<unsigned char>(text[i])))
                return false;
            if (text[i] == '0')
                ++i;
            else
                while (i < n && std::isdigit(static_cast<unsigned char>(text[i])))
                    ++i;
            if (i < n && text[i] == '.')
            {
                ++i;
                if (i >= n || !std::isdigit(static_cast<unsigned char>(text[i])))
                    return false;
                while (i < n && std::isdigit(static_cast<unsigned char>(text[i])))
                    ++i;
            }
            if (i < n && (text[i] == 'e' || text[i] == 'E'))
            {
                ++i;
                if (i < n && (text[i] == '+' || text[i] == '-'))
                    ++i;
                if (i >= n || !std::isdigit(static_cast<unsigned char>(text[i])))
                    return false;
                while (i < n && std::isdigit(static_cast<unsigned char>(text[i])))
                    ++i;
            }
            out = text.substr(b, i - b);
            return true;
        };
        // One scalar at i (string, number, true/false/null): its kind and text; false if malformed or none.
        auto scalar = [&](JsonMember &m) -> bool {
            const char c = text[i];
            if (c == '"')
            {
                m.kind = 's';
                return str(m.text);
            }
            if (c == '-' || std::isdigit(static_cast<unsigned char>(c)) || c == 'N' || c == 'I')
            {
                m.kind = 'n';
                return number(m.text);
            }
            for (const char *word : {"true", "false", "null"})
            {
                const size_t len = std::char_traits<char>::length(word);
                if (text.compare(i, len, word) == 0)
                {
                    m.kind = word[0] == 'n' ? 'z' : 'b';
                    m.text = word;
                    i += len;
                    return true;
                }
            }
            return false;
        };
        // Inside an object: `"key" :` (whitespace allowed before the colon); the key itself is not kept.
        auto memberKey = [&]() -> bool {
            std::string key;
            if (i >= n || text[i] != '"' || !str(key))
                return false;
            ws();
            return i < n && text[i++] == ':';
        };
        // Skip one value of any kind (nested ones iteratively); kind and text of a scalar.
        auto value = [&](JsonMember &m) -> bool {
            ws();
            if (i >= n)
                return false;
            char c = text[i];
            if (c != '{' && c != '[')
                return scalar(m);
            m.kind = c == '{' ? 'o' : 'a';
            std::vector<char> stack; // closing brackets still expected
            bool expectValue = true;
            while (i < n)
            {
                ws();
                if (i >= n)
                    return false;
                c = text[i];
                if (expectValue && (c == '{' || c == '['))
                {
                    if (stack.size() >= 64)
                        return false;
                    stack.push_back(c == '{' ? '}' : ']');
                    ++i;
                    ws();
                    if (i < n && text[i] == stack.back()) // empty container
                    {
                        ++i;
                        stack.pop_back();
                        expectValue = false;
                        if (stack.empty())
                            return true;
                        continue;
                    }
                    if (stack.back() == '}' && !memberKey())
                        return false;
                    continue;
                }
                if (expectValue)
                {
                    JsonMember nested;
                    if (!scalar(nested))
                        return false;
                    expectValue = false;
                    continue;
                }
                if (c == ',')
                {
                    ++i;
                    expectValue = true;
                    if (stack.back() == '}')
                    {
                        ws();
                        if (!memberKey())
                            return false;
                    }
                    continue;
                }
                if (c == stack.back())
                {
                    ++i;
                    stack.pop_back();
                    if (stack.empty())
                        return true;
                    continue;
                }
                return false;
            }
            return false;
        };
        std::map<std::string, JsonMember> members;
        ws();
        if (i >= n || text[i] != '{')
            return fail("not a JSON object");
        ++i;
        ws();
        if (i < n && text[i] == '}')
        {
            ++i;
            ws();
            if (i != n)
                return fail("text after the object");
            return members;
        }
        while (true)
        {
            ws();
            std::string key;
            if (i >= n || text[i] != '"' || !str(key))
                return fail("expected a member name");
            ws();
            if (i >= n || text[i++] != ':')
                return fail("expected ':'");
            JsonMember m;
            if (!value(m))
                return fail("not a JSON value (or nested more than 64 deep)");
            members[key] = m;
            ws();
            if (i < n && text[i] == ',')
            {
                ++i;
                continue;
            }
            if (i < n && text[i] == '}')
            {
                ++i;
                break;
            }
            return fail("expected ',' or '}'");
        }
        ws();
        if (i != n)
            return fail("text after the object");
        return members;
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
        if (!r.malformed.empty())
        {
            Reject(r, "malformed record: " + r.malformed, nullptr);
            return std::nullopt;
        }
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
        std::string jsonError;
        const auto args = ParseArgs(r.args.value_or("{}"), jsonError);
        if (!args)
        {
            Reject(r, "malformed args (" + jsonError + ")", nullptr);
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

        if (cmd.answers_step > m_CurrentStep)
        {
            Reject(r,
                   "answers step " + std::to_string(cmd.answers_step) +
                       ", which this simulation has not reached (it is at " +
                       std::to_string(m_CurrentStep) + "): a stale steering stream from another run?",
                   &cmd);
            return std::nullopt;
        }
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
            return ApplySet(cmd, r, *args);
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

    std::optional<Command> ApplySet(const Command &cmd, const Record &r,
                                    const std::map<std::string, JsonMember> &args)
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
        // The typed fields repeat args; a record whose two disagree is not one the analytics wrote.
        auto name = args.find("name");
        auto value = args.find("value");
        if (name == args.end() || name->second.kind != 's' || name->second.text != cmd.set_name)
        {
            Reject(r, "malformed set: args name does not match set_name '" + cmd.set_name + "'", &cmd);
            return std::nullopt;
        }
        if (value == args.end() || value->second.kind != 'n')
        {
            Reject(r, "set " + cmd.set_name + ": args value is not a number", &cmd);
            return std::nullopt;
        }
        const double fromArgs = std::strtod(value->second.text.c_str(), nullptr);
        if (!std::isfinite(fromArgs) || !(fromArgs == cmd.set_value))
        {
            Reject(r, "set " + cmd.set_name + ": args value " + value->second.text.substr(0, 40) +
                          " is not a finite number equal to set_value",
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

-- A mailbot state database as schema version 1 wrote it (commit 4842ac4),
-- made by ingesting three messages; loaded by tests/test_migrations.py.
PRAGMA user_version = 1;
BEGIN TRANSACTION;
CREATE TABLE "kv" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT,
   "updated_at" TEXT
);
INSERT INTO "kv" VALUES('msgid_salt','75584097ee33bcb2','2026-11-27T03:35:16+00:00');
CREATE TABLE "mailbox_state" (
   "folder" TEXT PRIMARY KEY,
   "uidvalidity" INTEGER,
   "last_uid" INTEGER,
   "updated_at" TEXT
);
INSERT INTO "mailbox_state" VALUES('INBOX',7,3,'2023-08-13T02:00:00+00:00');
CREATE TABLE "messages" (
   "id" INTEGER PRIMARY KEY,
   "sha256" TEXT NOT NULL,
   "message_id" TEXT,
   "source" TEXT,
   "folder" TEXT,
   "uidvalidity" INTEGER,
   "uid" INTEGER,
   "received_at" TEXT NOT NULL,
   "from_addr" TEXT,
   "from_name" TEXT,
   "subject" TEXT,
   "status" TEXT NOT NULL,
   "reason" TEXT,
   "reason_code" TEXT,
   "unit" TEXT,
   "verified" INTEGER,
   "round" TEXT,
   "late" INTEGER,
   "archive_path" TEXT,
   "duplicate_of" INTEGER REFERENCES "messages"("id"),
   "warnings" TEXT,
   "files" TEXT,
   "processed_at" TEXT NOT NULL
);
INSERT INTO "messages" VALUES(1,'413cead0d6b700de3067842e72800eaa99affb59ec2cf310aa27e7556b3b4af9','<v1-0@xixia.example>','imap','INBOX',7,1,'2023-08-10T02:00:00+00:00','mzj@xixia.example','张三','民政局报送2023年中台账','accepted',NULL,NULL,'民政局',1,'年中',0,'/tmp/tmp1bci4qll/state/archive/41/413cead0d6b700de3067842e72800eaa99affb59ec2cf310aa27e7556b3b4af9.eml',NULL,'[]','[{"name": "民政局.docx", "kind": "docx", "sha256": "e0a2d331e05654ccf434e6ea8342963677480ae1e752360b316184c0821577f0", "path": "附件「民政局.docx」"}]','2026-11-27T03:35:16+00:00');
INSERT INTO "messages" VALUES(2,'5d12eec31d1b4ee3499ff1a360adad1729661b19fe8e61c6a75156efd3e9e6f8','<v1-1@xixia.example>','imap','INBOX',7,2,'2023-08-12T02:00:00+00:00','mzj@xixia.example','张三','民政局报送2023年中台账','accepted',NULL,NULL,'民政局',1,'年中',0,'/tmp/tmp1bci4qll/state/archive/5d/5d12eec31d1b4ee3499ff1a360adad1729661b19fe8e61c6a75156efd3e9e6f8.eml',NULL,'[]','[{"name": "民政局.docx", "kind": "docx", "sha256": "5092f14b6df29776f5d6b1d2096288dc5b24ef959e80de7b63017ac486852906", "path": "附件「民政局.docx」"}]','2026-11-27T03:35:16+00:00');
INSERT INTO "messages" VALUES(3,'fd04508a423629eb7565033b4f5e5bd144ba2ffa2ac770e7d614ef103aa9bb1d','<v1-pdf@xixia.example>','imap','INBOX',7,3,'2023-08-13T02:00:00+00:00','jyj@xixia.example','张三','教育局','rejected','附件是 PDF 文件，系统无法读取其中的表格：请发送填报好的 Word 文档（.docx），不要转成 PDF','pdf','教育局',1,'年中',0,'/tmp/tmp1bci4qll/state/archive/fd/fd04508a423629eb7565033b4f5e5bd144ba2ffa2ac770e7d614ef103aa9bb1d.eml',NULL,'[]','[{"name": "a.pdf", "kind": "pdf", "sha256": "e5c62df5dab5c87b6a015ef3d43597074d1eec433b15f51aec63b8582d0e4ab4", "path": "附件「a.pdf」"}]','2026-11-27T03:35:16+00:00');
CREATE TABLE "outbox" (
   "id" INTEGER PRIMARY KEY,
   "dedupe_key" TEXT NOT NULL,
   "kind" TEXT NOT NULL,
   "unit" TEXT,
   "round" TEXT,
   "message" INTEGER REFERENCES "messages"("id"),
   "to_addrs" TEXT,
   "cc_addrs" TEXT,
   "subject" TEXT,
   "body_text" TEXT,
   "body_html" TEXT,
   "msgid" TEXT,
   "in_reply_to" TEXT,
   "references" TEXT,
   "attachments" TEXT,
   "status" TEXT NOT NULL DEFAULT 'pending',
   "attempts" INTEGER DEFAULT 0,
   "next_attempt_at" TEXT,
   "last_error" TEXT,
   "created_at" TEXT NOT NULL,
   "sent_at" TEXT
);
INSERT INTO "outbox" VALUES(1,'ack:1','ack','民政局','年中',1,'["mzj@xixia.example"]','[]','【回执】民政局 2023年年中台账已登记（按时，1项），尚缺26项','民政局：

你单位于 2023年8月10日 10:00 报送的《银川市西夏区2023年政务公开工作要点任务落实台账》（2023年年中）已收到并登记。
本次报送在截止时间（2023年8月15日）前，属按时报送。

本次登记的任务（1 项）：
  任务1：第一版

你单位负责的任务中，以下 26 项尚未填写进展落实情况，请补充后重新发送完整台账：
  任务3：利用政府网站、政务新媒体、政务公开专区等平台，精准推送养老…
  任务4：主动公开社会组织信息，在政府网站按年度公开社会组织评估等级…
  任务6：持续深化涉及财政领域的信息公开
  任务7：抓好扩大投资信息公开
  任务8：全面开展清理
  任务9：打造专题政策文件包
  任务10：开展政策“精准”解读
  任务11：政策解读要采用多元化形式，通过图片、视频、互动直播、简明问…
  任务12：常态开展政策咨询和政民互动，组织各单位开展多种形式“政策公…
  任务13：市民大厅设立“西夏区政策咨询导引综合服务站”，并向“政务公…
  任务14：编制西夏区年度重大行政决策事项目录
  任务15：决策事项向社会公开征求意见的，要综合选用政府网站、政务新媒…
  任务16：持续推动利益相关方、群众代表、专家、媒体等列席政府有关会议…
  任务17：日常做好热线电话、区长信箱、网站互动交流等政民互动渠道的日…
  任务18：依法依规做好政府信息依申请公开
  任务19：全面落实《全区“政府开放日”工作方案》（宁政公开办发〔20…
  任务21：严格落实政府信息公开“三审三校”制度，严把政治关、法律关、…
  任务22：常态开展全区政府系统网络工作群清理，每年年底前报送清理报表
  任务23：强化政务新媒体监督管理，深入推进政务新媒体规范化建设，严格…
  任务24：优化职能职责一键查询
  任务25：各单位要将制发的规范性文件、政策性文件于正式印发后5个工作…
  任务26：每年组织一次政务公开专题培训，提高领导干部公开意识和水平
  任务27：围绕基层政务公开、政府网站及政务新媒体等各项任务落地情况，…
  任务28：政府办公室根据年度重点任务,以评价实际工作为导向，优化政务…
  任务29：政府办公室根据要点形成台账，明确责任主体和落实时限，实时跟…
  任务30：对上一年度政务公开工作要点落实情况开展“回头看”，重点针对…


——
银川市西夏区人民政府办公室
此邮件由台账报送系统自动发送。如需更正，请直接回复本邮件并附上修改后的完整台账（以最新一次报送为准）。

','<div style="font-family:''Microsoft YaHei'',''PingFang SC'',sans-serif;font-size:14px;line-height:1.7">
<p>民政局：</p>
<p>你单位于 2023年8月10日 10:00 报送的《银川市西夏区2023年政务公开工作要点任务落实台账》（2023年年中）已收到并登记。
本次报送在截止时间（2023年8月15日）前，属按时报送。</p>

<p>本次登记的任务（1 项）：</p>
<table style="border-collapse:collapse" border="1" cellpadding="4">
<tr><th>任务</th><th>进展落实情况（摘要）</th></tr>
<tr><td>1</td><td>第一版</td></tr>
</table>

<p>你单位负责的任务中，以下 <b>26</b> 项尚未填写进展落实情况，请补充后重新发送完整台账：</p>
<ul><li>任务3：利用政府网站、政务新媒体、政务公开专区等平台，精准推送养老…</li><li>任务4：主动公开社会组织信息，在政府网站按年度公开社会组织评估等级…</li><li>任务6：持续深化涉及财政领域的信息公开</li><li>任务7：抓好扩大投资信息公开</li><li>任务8：全面开展清理</li><li>任务9：打造专题政策文件包</li><li>任务10：开展政策“精准”解读</li><li>任务11：政策解读要采用多元化形式，通过图片、视频、互动直播、简明问…</li><li>任务12：常态开展政策咨询和政民互动，组织各单位开展多种形式“政策公…</li><li>任务13：市民大厅设立“西夏区政策咨询导引综合服务站”，并向“政务公…</li><li>任务14：编制西夏区年度重大行政决策事项目录</li><li>任务15：决策事项向社会公开征求意见的，要综合选用政府网站、政务新媒…</li><li>任务16：持续推动利益相关方、群众代表、专家、媒体等列席政府有关会议…</li><li>任务17：日常做好热线电话、区长信箱、网站互动交流等政民互动渠道的日…</li><li>任务18：依法依规做好政府信息依申请公开</li><li>任务19：全面落实《全区“政府开放日”工作方案》（宁政公开办发〔20…</li><li>任务21：严格落实政府信息公开“三审三校”制度，严把政治关、法律关、…</li><li>任务22：常态开展全区政府系统网络工作群清理，每年年底前报送清理报表</li><li>任务23：强化政务新媒体监督管理，深入推进政务新媒体规范化建设，严格…</li><li>任务24：优化职能职责一键查询</li><li>任务25：各单位要将制发的规范性文件、政策性文件于正式印发后5个工作…</li><li>任务26：每年组织一次政务公开专题培训，提高领导干部公开意识和水平</li><li>任务27：围绕基层政务公开、政府网站及政务新媒体等各项任务落地情况，…</li><li>任务28：政府办公室根据年度重点任务,以评价实际工作为导向，优化政务…</li><li>任务29：政府办公室根据要点形成台账，明确责任主体和落实时限，实时跟…</li><li>任务30：对上一年度政务公开工作要点落实情况开展“回头看”，重点针对…</li></ul>


<hr><p style="color:#666;font-size:12px">银川市西夏区人民政府办公室<br>此邮件由台账报送系统自动发送。如需更正，请直接回复本邮件并附上修改后的完整台账（以最新一次报送为准）。</p>

</div>
','<mailbot.d22a8d9095bf20c78d5363efd7847614@163.com>','<v1-0@xixia.example>','<v1-0@xixia.example>','[]','pending',0,NULL,NULL,'2026-11-27T03:35:16+00:00',NULL);
INSERT INTO "outbox" VALUES(2,'ack:2','ack','民政局','年中',2,'["mzj@xixia.example"]','[]','【回执】民政局 2023年年中台账已登记（按时，1项），尚缺26项','民政局：

你单位于 2023年8月12日 10:00 报送的《银川市西夏区2023年政务公开工作要点任务落实台账》（2023年年中）已收到并登记。
本次报送在截止时间（2023年8月15日）前，属按时报送。
本次报送已更新你单位此前报送的内容，以本次为准。

本次登记的任务（1 项）：
  任务1：第二版

你单位负责的任务中，以下 26 项尚未填写进展落实情况，请补充后重新发送完整台账：
  任务3：利用政府网站、政务新媒体、政务公开专区等平台，精准推送养老…
  任务4：主动公开社会组织信息，在政府网站按年度公开社会组织评估等级…
  任务6：持续深化涉及财政领域的信息公开
  任务7：抓好扩大投资信息公开
  任务8：全面开展清理
  任务9：打造专题政策文件包
  任务10：开展政策“精准”解读
  任务11：政策解读要采用多元化形式，通过图片、视频、互动直播、简明问…
  任务12：常态开展政策咨询和政民互动，组织各单位开展多种形式“政策公…
  任务13：市民大厅设立“西夏区政策咨询导引综合服务站”，并向“政务公…
  任务14：编制西夏区年度重大行政决策事项目录
  任务15：决策事项向社会公开征求意见的，要综合选用政府网站、政务新媒…
  任务16：持续推动利益相关方、群众代表、专家、媒体等列席政府有关会议…
  任务17：日常做好热线电话、区长信箱、网站互动交流等政民互动渠道的日…
  任务18：依法依规做好政府信息依申请公开
  任务19：全面落实《全区“政府开放日”工作方案》（宁政公开办发〔20…
  任务21：严格落实政府信息公开“三审三校”制度，严把政治关、法律关、…
  任务22：常态开展全区政府系统网络工作群清理，每年年底前报送清理报表
  任务23：强化政务新媒体监督管理，深入推进政务新媒体规范化建设，严格…
  任务24：优化职能职责一键查询
  任务25：各单位要将制发的规范性文件、政策性文件于正式印发后5个工作…
  任务26：每年组织一次政务公开专题培训，提高领导干部公开意识和水平
  任务27：围绕基层政务公开、政府网站及政务新媒体等各项任务落地情况，…
  任务28：政府办公室根据年度重点任务,以评价实际工作为导向，优化政务…
  任务29：政府办公室根据要点形成台账，明确责任主体和落实时限，实时跟…
  任务30：对上一年度政务公开工作要点落实情况开展“回头看”，重点针对…


——
银川市西夏区人民政府办公室
此邮件由台账报送系统自动发送。如需更正，请直接回复本邮件并附上修改后的完整台账（以最新一次报送为准）。

','<div style="font-family:''Microsoft YaHei'',''PingFang SC'',sans-serif;font-size:14px;line-height:1.7">
<p>民政局：</p>
<p>你单位于 2023年8月12日 10:00 报送的《银川市西夏区2023年政务公开工作要点任务落实台账》（2023年年中）已收到并登记。
本次报送在截止时间（2023年8月15日）前，属按时报送。</p>
<p>本次报送已更新你单位此前报送的内容，以本次为准。</p>
<p>本次登记的任务（1 项）：</p>
<table style="border-collapse:collapse" border="1" cellpadding="4">
<tr><th>任务</th><th>进展落实情况（摘要）</th></tr>
<tr><td>1</td><td>第二版</td></tr>
</table>

<p>你单位负责的任务中，以下 <b>26</b> 项尚未填写进展落实情况，请补充后重新发送完整台账：</p>
<ul><li>任务3：利用政府网站、政务新媒体、政务公开专区等平台，精准推送养老…</li><li>任务4：主动公开社会组织信息，在政府网站按年度公开社会组织评估等级…</li><li>任务6：持续深化涉及财政领域的信息公开</li><li>任务7：抓好扩大投资信息公开</li><li>任务8：全面开展清理</li><li>任务9：打造专题政策文件包</li><li>任务10：开展政策“精准”解读</li><li>任务11：政策解读要采用多元化形式，通过图片、视频、互动直播、简明问…</li><li>任务12：常态开展政策咨询和政民互动，组织各单位开展多种形式“政策公…</li><li>任务13：市民大厅设立“西夏区政策咨询导引综合服务站”，并向“政务公…</li><li>任务14：编制西夏区年度重大行政决策事项目录</li><li>任务15：决策事项向社会公开征求意见的，要综合选用政府网站、政务新媒…</li><li>任务16：持续推动利益相关方、群众代表、专家、媒体等列席政府有关会议…</li><li>任务17：日常做好热线电话、区长信箱、网站互动交流等政民互动渠道的日…</li><li>任务18：依法依规做好政府信息依申请公开</li><li>任务19：全面落实《全区“政府开放日”工作方案》（宁政公开办发〔20…</li><li>任务21：严格落实政府信息公开“三审三校”制度，严把政治关、法律关、…</li><li>任务22：常态开展全区政府系统网络工作群清理，每年年底前报送清理报表</li><li>任务23：强化政务新媒体监督管理，深入推进政务新媒体规范化建设，严格…</li><li>任务24：优化职能职责一键查询</li><li>任务25：各单位要将制发的规范性文件、政策性文件于正式印发后5个工作…</li><li>任务26：每年组织一次政务公开专题培训，提高领导干部公开意识和水平</li><li>任务27：围绕基层政务公开、政府网站及政务新媒体等各项任务落地情况，…</li><li>任务28：政府办公室根据年度重点任务,以评价实际工作为导向，优化政务…</li><li>任务29：政府办公室根据要点形成台账，明确责任主体和落实时限，实时跟…</li><li>任务30：对上一年度政务公开工作要点落实情况开展“回头看”，重点针对…</li></ul>


<hr><p style="color:#666;font-size:12px">银川市西夏区人民政府办公室<br>此邮件由台账报送系统自动发送。如需更正，请直接回复本邮件并附上修改后的完整台账（以最新一次报送为准）。</p>

</div>
','<mailbot.abffd7646e46612e22087020414affea@163.com>','<v1-1@xixia.example>','<v1-1@xixia.example>','[]','pending',0,NULL,NULL,'2026-11-27T03:35:16+00:00',NULL);
INSERT INTO "outbox" VALUES(3,'reject:3','reject','教育局','年中',3,'["jyj@xixia.example"]','[]','【退回】教育局 台账未能登记：附件是 PDF 文件，系统无法读取其中的表格：请发送填报好…','教育局：

2023年8月13日 10:00 收到你单位发送的邮件「教育局」，但未能登记为《银川市西夏区2023年政务公开工作要点任务落实台账》（2023年年中）的报送：

  附件是 PDF 文件，系统无法读取其中的表格：请发送填报好的 Word 文档（.docx），不要转成 PDF

邮件中收到的附件：a.pdf
请按上述提示处理后，直接回复本邮件重新发送填报好的 Word 台账（.docx）。截止时间：2023年8月15日。
附件是为你单位预先填好单位名称的空白台账，可直接填写后发回。


——
银川市西夏区人民政府办公室
此邮件由台账报送系统自动发送。如需更正，请直接回复本邮件并附上修改后的完整台账（以最新一次报送为准）。

','<div style="font-family:''Microsoft YaHei'',''PingFang SC'',sans-serif;font-size:14px;line-height:1.7">
<p>教育局：</p>
<p>2023年8月13日 10:00 收到你单位发送的邮件「教育局」，但未能登记为《银川市西夏区2023年政务公开工作要点任务落实台账》（2023年年中）的报送：</p>
<p style="color:#b00;font-weight:bold">附件是 PDF 文件，系统无法读取其中的表格：请发送填报好的 Word 文档（.docx），不要转成 PDF</p>
<p>邮件中收到的附件：a.pdf</p>
<p>请按上述提示处理后，直接回复本邮件重新发送填报好的 Word 台账（.docx）。截止时间：2023年8月15日。</p>
<p>附件是为你单位预先填好单位名称的空白台账，可直接填写后发回。</p>
<hr><p style="color:#666;font-size:12px">银川市西夏区人民政府办公室<br>此邮件由台账报送系统自动发送。如需更正，请直接回复本邮件并附上修改后的完整台账（以最新一次报送为准）。</p>

</div>
','<mailbot.46cde7d2bf12438a37b50de7c43a894b@163.com>','<v1-pdf@xixia.example>','<v1-pdf@xixia.example>','[{"path": "/tmp/tmp1bci4qll/state/forms/年中/教育局-d4165c0ea6b5.docx", "name": "教育局-任务落实台账（填报版）.docx"}]','pending',0,NULL,NULL,'2026-11-27T03:35:16+00:00',NULL);
CREATE TABLE "progress" (
   "round" TEXT,
   "unit" TEXT,
   "task" INTEGER,
   "progress" TEXT,
   "report" INTEGER REFERENCES "reports"("id"),
   "received_at" TEXT,
   "message_id" TEXT,
   PRIMARY KEY ("round", "unit", "task")
);
INSERT INTO "progress" VALUES('年中','民政局',1,'第二版',2,'2023-08-12T02:00:00+00:00','<v1-1@xixia.example>');
CREATE TABLE "progress_history" (
   "id" INTEGER PRIMARY KEY,
   "round" TEXT,
   "unit" TEXT,
   "task" INTEGER,
   "progress" TEXT,
   "report" INTEGER REFERENCES "reports"("id"),
   "received_at" TEXT
);
INSERT INTO "progress_history" VALUES(1,'年中','民政局',1,'第一版',1,'2023-08-10T02:00:00+00:00');
INSERT INTO "progress_history" VALUES(2,'年中','民政局',1,'第二版',2,'2023-08-12T02:00:00+00:00');
CREATE TABLE "reports" (
   "id" INTEGER PRIMARY KEY,
   "message" INTEGER NOT NULL REFERENCES "messages"("id"),
   "round" TEXT NOT NULL,
   "unit" TEXT NOT NULL,
   "verified" INTEGER,
   "late" INTEGER,
   "received_at" TEXT NOT NULL,
   "filename" TEXT,
   "file_sha256" TEXT,
   "unit_as_written" TEXT,
   "contact" TEXT,
   "phone" TEXT,
   "converted_from" TEXT,
   "filled" INTEGER,
   "warnings" TEXT
);
INSERT INTO "reports" VALUES(1,1,'年中','民政局',1,0,'2023-08-10T02:00:00+00:00','民政局.docx','e0a2d331e05654ccf434e6ea8342963677480ae1e752360b316184c0821577f0','民政局','张三','1',NULL,1,'[]');
INSERT INTO "reports" VALUES(2,2,'年中','民政局',1,0,'2023-08-12T02:00:00+00:00','民政局.docx','5092f14b6df29776f5d6b1d2096288dc5b24ef959e80de7b63017ac486852906','民政局','张三','1',NULL,1,'[]');
CREATE INDEX "idx_messages_sha256"
    ON "messages" ("sha256");
CREATE INDEX "idx_messages_message_id"
    ON "messages" ("message_id");
CREATE INDEX "idx_messages_folder_uidvalidity_uid"
    ON "messages" ("folder", "uidvalidity", "uid");
CREATE INDEX "idx_reports_round_unit"
    ON "reports" ("round", "unit");
CREATE INDEX "idx_progress_history_round_unit_task"
    ON "progress_history" ("round", "unit", "task");
CREATE UNIQUE INDEX "idx_outbox_dedupe_key"
    ON "outbox" ("dedupe_key");
CREATE INDEX "idx_outbox_status_next_attempt_at"
    ON "outbox" ("status", "next_attempt_at");
COMMIT;

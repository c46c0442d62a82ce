//! The console's message catalogue: every string an operator reads, in Chinese (the default)
//! and English.
//!
//! Written by hand rather than with `rust-i18n` or Fluent: the catalogue is one table of
//! `Msg` variants, each with both translations on its line, so a page that names a message
//! missing in either language does not compile (those crates find a missing key at run time,
//! as a fallback string an operator would see). Messages with values take them as arguments
//! of [`Msg::fill`] (`{0}`, `{1}` in the text).

use serde::{Deserialize, Serialize};

/// An operator's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// The tag stored and used in `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "zh-CN" | "zh" => Some(Lang::ZhCn),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// What the language switch shows for this language (in that language).
    pub fn name(self) -> &'static str {
        match self {
            Lang::ZhCn => "中文",
            Lang::En => "English",
        }
    }
}

/// A message of a catalogue: its text in a language.
pub trait Message: Copy {
    fn text(self, lang: Lang) -> &'static str;

    /// The message in `lang` with `{0}`, `{1}`… replaced by `values`.
    fn fill(self, lang: Lang, values: &[&str]) -> String {
        let mut text = self.text(lang).to_owned();
        for (i, value) in values.iter().enumerate() {
            text = text.replace(&format!("{{{i}}}"), value);
        }
        text
    }
}

/// Declare a catalogue: `enum Name { Key => "中文", "English"; … }`. The shared one is
/// [`Msg`]; a page with strings of its own declares its own catalogue beside it.
macro_rules! catalogue {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($key:ident => $zh:literal, $en:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($key,)+
        }

        #[allow(dead_code)]
        impl $name {
            /// Every message (for the catalogue's own tests).
            pub const ALL: &'static [$name] = &[$($name::$key,)+];
        }

        impl $crate::console::i18n::Message for $name {
            fn text(self, lang: $crate::console::i18n::Lang) -> &'static str {
                match (self, lang) {
                    $(($name::$key, $crate::console::i18n::Lang::ZhCn) => $zh,
                      ($name::$key, $crate::console::i18n::Lang::En) => $en,)+
                }
            }
        }
    };
}
#[allow(unused_imports)] // used by the pages that declare their own catalogue
pub(crate) use catalogue;

/// Check a catalogue: every message has both languages and the same `{n}` slots in each
/// (each catalogue's tests call this with its `ALL`).
#[cfg(test)]
pub fn check_catalogue<M: Message + std::fmt::Debug>(all: &[M]) {
    for msg in all {
        let zh = msg.text(Lang::ZhCn);
        let en = msg.text(Lang::En);
        assert!(!zh.trim().is_empty() && !en.trim().is_empty(), "{msg:?}");
        for i in 0..4 {
            let slot = format!("{{{i}}}");
            assert_eq!(zh.contains(&slot), en.contains(&slot), "{msg:?} {slot}");
        }
    }
}

catalogue! {
    /// The messages every page shares.
    pub enum Msg {
    Console => "社群后台", "shequn console";
    SignIn => "登录", "Sign in";
    SignOut => "退出", "Sign out";
    Email => "邮箱", "Email";
    Password => "密码", "Password";
    BadCredentials => "邮箱或密码不正确", "Wrong email or password";
    TooManyAttempts => "登录失败次数过多，请{0}分钟后再试", "Too many failed sign-ins: try again in {0} minutes";
    SessionExpired => "登录已过期，请重新登录", "Your session has ended: please sign in again";
    CsrfRefused => "表单已过期，请刷新页面后重试", "This form has expired: reload the page and try again";
    ViewerRefused => "只读账号不能修改数据", "A viewer cannot change anything";
    OwnerOnly => "只有所有者可以进行此操作", "Only an owner can do this";
    NotFound => "未找到", "Not found";
    Language => "语言", "Language";
    Navigation => "导航", "Navigation";
    NavInsight => "数据", "Insight";
    NavCustomers => "客户", "Customers";
    NavCommerce => "交易", "Commerce";
    NavMarketing => "营销", "Marketing";
    NavPartners => "合作伙伴", "Partners";
    NavAdministration => "系统", "Administration";
    Dashboard => "概览", "Dashboard";
    Program => "会员体系", "Program";
    Products => "商品", "Products";
    Sales => "营销活动", "Sales";
    Community => "社群", "Community";
    Members => "会员", "Members";
    Segments => "人群", "Segments";
    Engagement => "触达", "Engagement";
    Settings => "设置", "Settings";
    AuditLog => "操作日志", "Audit log";
    Search => "搜索", "Search";
    SearchHint => "姓名、手机号或外部编号", "Name, phone or external id";
    Tag => "标签", "Tag";
    Source => "来源渠道", "Source";
    RfmSegment => "RFM 分群", "RFM segment";
    Status => "状态", "Status";
    Any => "全部", "Any";
    Filter => "筛选", "Filter";
    NextPage => "下一页", "Next page";
    FirstPage => "第一页", "First page";
    BadYuan => "{0}：请输入金额（元），最多两位小数", "{0}: type an amount in yuan with at most two decimals";
    BadWhole => "{0}：请输入整数", "{0}: type a whole number";
    Name => "姓名", "Name";
    Title => "名称", "Name";
    Phone => "手机号", "Phone";
    ExternalId => "外部编号", "External id";
    Tier => "等级", "Tier";
    Growth => "成长值", "Growth";
    Joined => "加入时间", "Joined";
    NoneYet => "暂无", "None yet";
    Profile => "资料", "Profile";
    Tags => "标签", "Tags";
    AddTag => "添加标签", "Add tag";
    Remove => "移除", "Remove";
    Birthday => "生日", "Birthday";
    Lifecycle => "生命周期", "Lifecycle";
    InvitedBy => "邀请人", "Invited by";
    MarketingConsent => "营销授权", "Marketing consent";
    Yes => "是", "Yes";
    No => "否", "No";
    Erase => "删除个人数据", "Erase personal data";
    EraseConfirm => "删除后无法恢复：姓名、手机号等个人数据将被清除，账本仍保持平衡。请输入会员编号确认。", "This cannot be undone: name, phone and other personal data are removed while the ledger still balances. Type the member id to confirm.";
    EraseMismatch => "输入的编号与会员不符", "The id typed does not match this member";
    Erased => "已删除", "Erased";
    Active => "正常", "Active";
    Saved => "已保存", "Saved";
    ApiKeys => "API 密钥", "API keys";
    CreateKey => "创建密钥", "Create key";
    KeyShownOnce => "请立即复制，此密钥只显示这一次：", "Copy it now: this key is shown only once:";
    Revoke => "吊销", "Revoke";
    Revoked => "已吊销", "Revoked";
    Role => "角色", "Role";
    Created => "创建时间", "Created";
    Operators => "操作员", "Operators";
    CreateOperator => "添加操作员", "Add operator";
    TimeZone => "时区", "Time zone";
    Save => "保存", "Save";
    When => "时间", "When";
    Who => "操作员", "Who";
    Action => "操作", "Action";
    Result => "结果", "Result";
    RoleOwner => "所有者", "Owner";
    RoleOperator => "运营", "Operator";
    RoleViewer => "只读", "Viewer";
    RoleIntegration => "系统集成", "Integration";
    ErrorTitle => "出错了", "Something went wrong";
    Back => "返回", "Back";
    Balances => "余额", "Balances";
    Points => "积分", "Points";
    StoredValue => "储值", "Stored value";
    Orders => "订单", "Orders";
    Coupons => "优惠券", "Coupons";
    Checkins => "打卡", "Check-ins";
    Referrals => "推荐", "Referrals";
    Distribution => "分销", "Distribution";
    Neighbourhood => "社区团购", "Group buying";
    Subscriptions => "周期购", "Subscriptions";
    Alliance => "商家联盟", "Alliance";
    Codes => "一物一码", "Item codes";
    Groups => "社群", "Groups";
    Analytics => "分析", "Analytics";
    PAlive => "存活概率", "P(alive)";
    Clv => "预测生命周期价值", "Predicted CLV";
    Amount => "金额", "Amount";
    Total => "合计", "Total";
    Reason => "原因", "Reason";
    Transfers => "流水", "Transfers";
    Streak => "连续打卡", "Streak";
    CheckedInToday => "今日已打卡", "Checked in today";
    ThisMonth => "本月打卡天数", "Days this month";
    InviteCode => "邀请码", "Invite code";
    StoredValueBonus => "储值赠送", "Stored value bonus";
    Commission => "佣金", "Commission";
    Balance => "余额", "Balance";
    Available => "可用", "Available";
    Asset => "资产", "Asset";
    ValidTo => "有效期至", "Valid until";
    NotScoredYet => "尚未计算（运行每日任务或 shequn analytics fit 后可见）", "Not scored yet (run the daily job or shequn analytics fit)";
    PaidGmv => "支付金额", "Paid GMV";
    PaidGmvYuan => "支付金额（元）", "Paid GMV (¥)";
    PaidOrders => "支付订单", "Paid orders";
    NewMembers => "新会员", "New members";
    ActiveMembers => "活跃会员", "Active members";
    Refunded => "退款", "Refunded";
    Today => "今日", "Today";
    LastDays => "最近{0}天", "Last {0} days";
    TopProducts => "热销商品", "Top products";
    RunningFlashSales => "进行中的秒杀", "Flash sales selling now";
    Product => "商品", "Product";
    Price => "价格", "Price";
    Sold => "已售", "Sold";
    Reserved => "待支付", "Reserved";
    Units => "件数", "Units";
    Prefix => "前缀", "Prefix";
    RevokeConfirm => "吊销后使用此密钥的系统将无法访问，确定吗？", "Systems using this key will lose access. Revoke it?";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_languages_and_matching_placeholders() {
        check_catalogue(Msg::ALL);
    }

    #[test]
    fn fill_replaces_numbered_slots() {
        assert_eq!(
            Msg::TooManyAttempts.fill(Lang::En, &["7"]),
            "Too many failed sign-ins: try again in 7 minutes"
        );
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }
}

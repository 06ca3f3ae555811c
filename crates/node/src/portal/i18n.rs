//! Every text the portal shows, in Chinese and English, from one table ([`texts!`] below):
//! each row is a key, its Chinese and its English. A row cannot leave a language out, and
//! a page can only name keys the table has (the templates are checked at compile time).
//! Some texts hold `{name}` slots that [`fill`] fills (numbers from the configuration).
//! Chinese terms follow the glossary of the project's conventions (财政, 人民银行国库,
//! 代理银行, 预算单位, 行政区划, 经办/审核/签章, 凭证, 回单, 额度, 清算, 对账 …).

use guoku_seal::pki::OrgRole;

use crate::access::Post;

/// A language of the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    /// 简体中文, the default.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// Every language, the default first.
    pub const ALL: [Lang; 2] = [Lang::Zh, Lang::En];

    /// The code kept in the language cookie and sent by the switch.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The language with this code.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The value of the page's `lang` attribute (BCP 47).
    #[must_use]
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language a browser asks for in `Accept-Language`, if it is one of ours: the
    /// first listed of `zh…` or `en…` (weights are not weighed; browsers list the
    /// preferred first).
    #[must_use]
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        header.split(',').find_map(|item| {
            let tag = item.split(';').next()?.trim().to_ascii_lowercase();
            if tag == "zh" || tag.starts_with("zh-") {
                Some(Lang::Zh)
            } else if tag == "en" || tag.starts_with("en-") {
                Some(Lang::En)
            } else {
                None
            }
        })
    }

    /// The texts in this language.
    #[must_use]
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// Builds a text table: a struct with one `&'static str` field per key and its Chinese and
/// English instances. The portal's own texts are [`Texts`]; each desk module keeps its
/// pages' texts in a table of its own made with this macro, so a row can never leave a
/// language out.
macro_rules! text_table {
    ($(#[$meta:meta])* $name:ident, $zh_name:ident, $en_name:ident; $($key:ident: $zh:literal, $en:literal;)*) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            $(#[allow(missing_docs)] pub $key: &'static str,)*
        }

        /// 简体中文.
        pub static $zh_name: $name = $name { $($key: $zh,)* };
        /// English.
        pub static $en_name: $name = $name { $($key: $en,)* };

        impl $name {
            /// Every (key, text), in table order.
            #[must_use]
            #[allow(dead_code)]
            pub fn entries(&self) -> Vec<(&'static str, &'static str)> {
                vec![$((stringify!($key), self.$key)),*]
            }

            /// The table in `lang`.
            #[must_use]
            #[allow(dead_code)]
            pub fn of(lang: $crate::portal::i18n::Lang) -> &'static $name {
                match lang {
                    $crate::portal::i18n::Lang::Zh => &$zh_name,
                    $crate::portal::i18n::Lang::En => &$en_name,
                }
            }
        }
    };
}
pub(crate) use text_table;

macro_rules! texts {
    ($($key:ident: $zh:literal, $en:literal;)*) => {
        text_table! {
            /// The portal's texts in one language.
            Texts, ZH, EN; $($key: $zh, $en;)*
        }
    };
}

texts! {
    // The frame of every page.
    portal_name: "国库集中支付电子化管理门户", "Treasury payment portal";
    language: "语言", "Language";
    lang_zh: "中文", "中文";
    lang_en: "English", "English";
    sign_out: "退出登录", "Sign out";
    footer: "guoku 国库集中支付电子化管理", "guoku: paperless treasury centralized payment";

    // Signing in.
    sign_in_title: "登录", "Sign in";
    organisation: "所属机构", "Organisation";
    login: "用户名", "Login";
    password: "密码", "Password";
    sign_in_button: "登录", "Sign in";
    sign_in_hint: "登录需要密码和动态口令两项验证。", "Signing in takes your password and a code from your authenticator app.";
    bad_credentials: "用户名或密码错误。连续错误 {max} 次（密码或动态口令）将锁定账户 {lock} 分钟。", "Wrong login or password. {max} wrong attempts in a row (password or code) lock the account for {lock} minutes.";
    disabled: "该用户已停用，请联系系统管理员。", "This user is switched off; ask the system administrator.";
    no_second_factor: "该用户尚未绑定动态口令，请联系安全管理员。", "This user has no authenticator enrolled; ask the security administrator.";
    access_inconsistent: "该用户的岗位设置有误，请联系安全管理员。", "This user's posts are inconsistent; ask the security administrator.";
    unavailable: "系统暂时无法处理，请稍后再试。", "The system cannot answer right now; try again shortly.";

    // The second factor.
    second_factor_title: "动态口令验证", "Authenticator code";
    second_factor_hint: "请输入身份验证器应用中显示的 6 位动态口令。", "Enter the 6-digit code your authenticator app shows.";
    code: "动态口令", "Code";
    verify_button: "验证", "Verify";
    wrong_code: "动态口令错误或已使用。连续错误 {max} 次将锁定账户 {lock} 分钟。", "Wrong or already used code. {max} wrong attempts in a row lock the account for {lock} minutes.";
    locked: "错误次数过多，账户已锁定，请 {lock} 分钟后再试。", "Too many wrong attempts: the account is locked; try again in {lock} minutes.";
    start_again: "重新登录", "Sign in again";

    // The home page.
    home_title: "首页", "Home";
    account: "账户信息", "Your account";
    signed_in_as: "当前用户", "Signed in as";
    role: "机构类型", "Role";
    posts: "岗位", "Posts";
    divisions: "行政区划", "Administrative divisions";
    divisions_hint: "可查看以下行政区划及其下级区划的业务。", "You see the business of these divisions and the divisions under them.";
    none: "无", "none";
    session_ends: "会话在无操作 {idle} 分钟后或登录 {life} 分钟后结束。", "Your session ends after {idle} minutes without activity, or {life} minutes after signing in.";
    your_work: "本机构业务", "Your organisation's work";
    api_title: "接口", "API";
    api_description: "HTTP 接口说明（OpenAPI）", "HTTP API description (OpenAPI)";
    api_hint: "程序通过 HTTP 接口办理业务，接口令牌由系统管理员发放。", "Programs use the HTTP API with a token from the system administrator.";

    // Roles (机构类型) and what each does.
    role_finance: "财政", "Finance";
    role_pboc: "人民银行国库", "PBOC treasury";
    role_agent_bank: "代理银行", "Agent bank";
    role_budget_unit: "预算单位", "Budget unit";
    work_finance: "签发财政直接支付凭证（5201），下达清算额度通知（5106/5108），与人民银行国库、代理银行对账。", "Issues direct payment vouchers (5201) and clearing-quota notices (5106/5108); reconciles with the PBOC treasury and the agent banks.";
    work_pboc: "办理代理银行的申请划款（2301），按清算额度从国库单一账户清算，返回回单并对账。", "Clears the agent banks' clearing requests (2301) from the treasury single account within the clearing quota, returns receipts and reconciles.";
    work_agent_bank: "按凭证从零余额账户支付并返回回单，向人民银行国库申请划款（2301），办理退款。", "Pays vouchers from zero-balance accounts and returns receipts, sends clearing requests (2301) to the PBOC treasury, handles refunds.";
    work_budget_unit: "通过自助柜面签发财政授权支付凭证（8202），查询额度和回单。", "Issues authorized payment vouchers (8202) at the self-service counter; looks up quotas and receipts.";

    // Posts (岗位).
    post_maker: "经办", "Maker";
    post_checker: "审核", "Checker";
    post_signer: "签章", "Signer";
    post_system_admin: "系统管理员", "System administrator";
    post_security_admin: "安全管理员", "Security administrator";
    post_audit_admin: "审计管理员", "Audit administrator";

    // Refusals and errors.
    forbidden_title: "无权访问", "Not allowed";
    other_organisation: "只能访问本机构的页面。", "You may open only your own organisation's pages.";
    csrf_title: "请求无效", "Request refused";
    csrf_failed: "表单已失效或不是从本站提交的，未做任何更改。请返回刷新后重新提交。", "The form has expired or did not come from this site; nothing was changed. Go back, reload the page and submit it again.";
    bad_request: "请求格式错误，未做任何更改。", "The request is malformed; nothing was changed.";
    not_found_title: "页面不存在", "Page not found";
    not_found: "找不到该页面。", "There is no such page.";
    method_not_allowed: "该页面不接受此请求方式。", "This page does not take that kind of request.";
    error_title: "系统错误", "Error";
    back_home: "返回首页", "Back to the home page";
    back: "返回", "Back";
    post_forbids: "您的岗位不能进行此操作。", "Your posts do not allow this.";
    record_not_found: "找不到该记录，或您无权查看。", "There is no such record, or it is not yours to see.";
    in_progress_title: "正在处理", "Being processed";
    in_progress: "该表单已提交，正在处理中，请勿重复提交。稍后刷新查看结果。", "This form was already submitted and is being processed; do not submit it again. Reload shortly to see the outcome.";
    form_has_errors: "表单有误，请按提示修改后重新提交。未做任何更改。", "The form has errors; correct them and submit again. Nothing was changed.";

    // Signing with the organisation's signer key.
    pin: "签章 PIN", "Signing PIN";
    pin_required: "请输入签章 PIN。", "Enter your signing PIN.";
    pin_malformed: "签章 PIN 为 6 至 64 个字符。", "A signing PIN has 6 to 64 characters.";
    pin_wrong: "签章 PIN 错误，还可尝试 {remaining} 次。", "Wrong signing PIN: {remaining} tries left.";
    pin_locked: "签章密钥已锁定，请联系安全管理员。", "The signing key is locked: ask the security administrator.";
    no_key_store: "本节点未配置签章密钥，无法签章。", "This node has no signing key store configured.";

    // The desks' navigation.
    navigation: "功能导航", "Navigation";
}

/// `text` with each `{name}` slot replaced by its value.
#[must_use]
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_owned(), |t, (name, value)| {
        t.replace(&format!("{{{name}}}"), value)
    })
}

impl Texts {
    /// The name of an organisation role.
    #[must_use]
    pub fn role(&self, role: OrgRole) -> &'static str {
        match role {
            OrgRole::Finance => self.role_finance,
            OrgRole::Pboc => self.role_pboc,
            OrgRole::AgentBank => self.role_agent_bank,
            OrgRole::BudgetUnit => self.role_budget_unit,
        }
    }

    /// What an organisation of this role does.
    #[must_use]
    pub fn work(&self, role: OrgRole) -> &'static str {
        match role {
            OrgRole::Finance => self.work_finance,
            OrgRole::Pboc => self.work_pboc,
            OrgRole::AgentBank => self.work_agent_bank,
            OrgRole::BudgetUnit => self.work_budget_unit,
        }
    }

    /// The name of a post.
    #[must_use]
    pub fn post(&self, post: Post) -> &'static str {
        match post {
            Post::Maker => self.post_maker,
            Post::Checker => self.post_checker,
            Post::Signer => self.post_signer,
            Post::SystemAdmin => self.post_system_admin,
            Post::SecurityAdmin => self.post_security_admin,
            Post::AuditAdmin => self.post_audit_admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_fill_every_key() {
        let (zh, en) = (ZH.entries(), EN.entries());
        assert_eq!(zh.len(), en.len());
        for ((key, z), (_, e)) in zh.iter().zip(&en) {
            assert!(!z.trim().is_empty() && !e.trim().is_empty(), "{key}");
            // Language names are the same in both; every other text is translated.
            if !key.starts_with("lang_") {
                assert_ne!(z, e, "{key} is not translated");
                assert!(
                    z.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                    "{key}: the Chinese text has no Chinese"
                );
            }
        }
    }

    #[test]
    fn the_glossary_terms_are_used() {
        assert_eq!(ZH.role(OrgRole::Finance), "财政");
        assert_eq!(ZH.role(OrgRole::Pboc), "人民银行国库");
        assert_eq!(ZH.role(OrgRole::AgentBank), "代理银行");
        assert_eq!(ZH.role(OrgRole::BudgetUnit), "预算单位");
        assert_eq!(
            [Post::Maker, Post::Checker, Post::Signer].map(|p| ZH.post(p)),
            ["经办", "审核", "签章"]
        );
        assert_eq!(ZH.divisions, "行政区划");
        assert!(ZH.work_pboc.contains("清算额度") && !ZH.work_pboc.contains("余额"));
    }

    #[test]
    fn slots_are_filled() {
        let text = fill(ZH.bad_credentials, &[("max", "5"), ("lock", "30")]);
        assert!(
            text.contains("连续错误 5 次") && text.contains("30 分钟"),
            "{text}"
        );
        assert!(!text.contains('{'));
        assert_eq!(fill("{a}{a}{b}", &[("a", "1")]), "11{b}");
    }

    #[test]
    fn languages_come_from_codes_and_browsers() {
        for lang in Lang::ALL {
            assert_eq!(Lang::from_code(lang.code()), Some(lang));
        }
        assert_eq!(Lang::from_code("fr"), None);
        for (header, lang) in [
            ("en-US,en;q=0.9", Some(Lang::En)),
            ("zh-CN,zh;q=0.9,en;q=0.8", Some(Lang::Zh)),
            ("fr-FR, en-GB;q=0.8", Some(Lang::En)),
            ("fr", None),
            ("", None),
        ] {
            assert_eq!(Lang::from_accept_language(header), lang, "{header}");
        }
    }
}

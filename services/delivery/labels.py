"""The words of an invoice document in the customer's language (en, de, fr, ja, pt-BR;
others fall back to English). Numbers, amounts and dates are Babel's, in the locale."""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice", "draft": "DRAFT", "final": "Final invoice", "from": "From",
        "bill_to": "Bill to", "number": "Invoice number", "subscription": "Subscription",
        "billing_date": "Billing date", "issued": "Issued", "due": "Due date",
        "status": "Status", "tax_id": "Tax ID", "type": "Type", "charge": "Charge",
        "period": "Period", "both_days": "both days included", "quantity": "Quantity",
        "unit_price": "Unit price", "amount": "Amount", "subtotal": "Subtotal",
        "discount": "Discount", "tax": "Tax", "on": "on", "total": "Total",
        "total_credit": "Total (credit)", "credits": "Prepaid credits",
        "amount_due": "Amount due", "paid": "Paid", "payments": "Payments",
        "payment_instructions": "How to pay", "open": "open", "partially_paid":
        "partially paid", "void": "void", "uncollectible": "uncollectible", "overdue":
        "overdue", "sent": "sent", "all_amounts": "All amounts in",
        "reference": "Reference", "tax_exempt": "Tax exempt: no tax is charged to this "
        "customer.",
    },
    "de": {
        "invoice": "Rechnung", "draft": "ENTWURF", "final": "Schlussrechnung", "from": "Von",
        "bill_to": "Rechnung an", "number": "Rechnungsnummer", "subscription": "Abonnement",
        "billing_date": "Abrechnungsdatum", "issued": "Ausgestellt", "due": "Fällig am",
        "status": "Status", "tax_id": "USt-IdNr.", "type": "Art", "charge": "Posten",
        "period": "Zeitraum", "both_days": "beide Tage eingeschlossen", "quantity": "Menge",
        "unit_price": "Einzelpreis", "amount": "Betrag", "subtotal": "Zwischensumme",
        "discount": "Rabatt", "tax": "Steuer", "on": "auf", "total": "Gesamt",
        "total_credit": "Gesamt (Gutschrift)", "credits": "Guthaben",
        "amount_due": "Zu zahlen", "paid": "Bezahlt", "payments": "Zahlungen",
        "payment_instructions": "Zahlungshinweise", "open": "offen", "partially_paid":
        "teilweise bezahlt", "void": "storniert", "uncollectible": "uneinbringlich",
        "overdue": "überfällig", "sent": "versandt", "all_amounts": "Alle Beträge in",
        "reference": "Referenz", "tax_exempt": "Steuerbefreit: keine Steuer berechnet.",
    },
    "fr": {
        "invoice": "Facture", "draft": "BROUILLON", "final": "Facture finale", "from": "De",
        "bill_to": "Facturé à", "number": "Numéro de facture", "subscription": "Abonnement",
        "billing_date": "Date de facturation", "issued": "Émise", "due": "Échéance",
        "status": "Statut", "tax_id": "N° TVA", "type": "Type", "charge": "Poste",
        "period": "Période", "both_days": "les deux jours inclus", "quantity": "Quantité",
        "unit_price": "Prix unitaire", "amount": "Montant", "subtotal": "Sous-total",
        "discount": "Remise", "tax": "Taxe", "on": "sur", "total": "Total",
        "total_credit": "Total (avoir)", "credits": "Crédits prépayés",
        "amount_due": "Montant dû", "paid": "Payé", "payments": "Paiements",
        "payment_instructions": "Modalités de paiement", "open": "ouverte",
        "partially_paid": "partiellement payée", "void": "annulée", "uncollectible":
        "irrécouvrable", "overdue": "en retard", "sent": "envoyée",
        "all_amounts": "Tous les montants en", "reference": "Référence",
        "tax_exempt": "Exonéré de taxe : aucune taxe n'est facturée.",
    },
    "ja": {
        "invoice": "請求書", "draft": "下書き", "final": "最終請求書", "from": "請求元",
        "bill_to": "請求先", "number": "請求書番号", "subscription": "契約",
        "billing_date": "請求日", "issued": "発行日時", "due": "お支払期限",
        "status": "状態", "tax_id": "登録番号", "type": "種別", "charge": "項目",
        "period": "期間", "both_days": "初日と末日を含む", "quantity": "数量",
        "unit_price": "単価", "amount": "金額", "subtotal": "小計", "discount": "値引き",
        "tax": "税", "on": "対象", "total": "合計", "total_credit": "合計（返金）",
        "credits": "前払いクレジット", "amount_due": "ご請求額", "paid": "支払済",
        "payments": "お支払い", "payment_instructions": "お支払方法", "open": "未払い",
        "partially_paid": "一部支払済", "void": "無効", "uncollectible": "回収不能",
        "overdue": "期限超過", "sent": "送付済", "all_amounts": "通貨",
        "reference": "参照", "tax_exempt": "免税：税は請求されません。",
    },
    "pt": {
        "invoice": "Fatura", "draft": "RASCUNHO", "final": "Fatura final", "from": "De",
        "bill_to": "Cobrar de", "number": "Número da fatura", "subscription": "Assinatura",
        "billing_date": "Data de cobrança", "issued": "Emitida", "due": "Vencimento",
        "status": "Situação", "tax_id": "CNPJ/CPF", "type": "Tipo", "charge": "Item",
        "period": "Período", "both_days": "ambos os dias incluídos", "quantity": "Quantidade",
        "unit_price": "Preço unitário", "amount": "Valor", "subtotal": "Subtotal",
        "discount": "Desconto", "tax": "Imposto", "on": "sobre", "total": "Total",
        "total_credit": "Total (crédito)", "credits": "Créditos pré-pagos",
        "amount_due": "Valor devido", "paid": "Pago", "payments": "Pagamentos",
        "payment_instructions": "Como pagar", "open": "em aberto", "partially_paid":
        "parcialmente paga", "void": "anulada", "uncollectible": "incobrável",
        "overdue": "vencida", "sent": "enviada", "all_amounts": "Todos os valores em",
        "reference": "Referência", "tax_exempt": "Isento: nenhum imposto é cobrado.",
    },
}


def labels(locale: str) -> dict[str, str]:
    """The words for ``locale`` (``de_DE`` → German; an unknown language → English)."""
    return LABELS.get(locale.split("_")[0].lower(), LABELS["en"])
